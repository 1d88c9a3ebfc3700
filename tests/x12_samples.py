"""X12 interchanges built for tests, in any delimiters a sender may declare."""

from __future__ import annotations

__all__ = [
    "answer_sets",
    "inquiry_sets",
    "institutional_sets",
    "interchange",
    "professional_sets",
    "redelimit",
    "remittance_sets",
    "x12_file",
    "x12_seeds",
]


def interchange(
    control: str = "000000123",
    *,
    element: str = "*",
    component: str = ":",
    segment: str = "~",
    repetition: str = "^",
    version: str = "00501",
    after: str = "",
    body: str | None = None,
) -> str:
    """An 837P interchange with one group of two claims' transaction sets, in the given delimiters."""
    e, t = element, segment + after
    isa = e.join(
        [
            "ISA",
            "00",
            " " * 10,
            "00",
            " " * 10,
            "ZZ",
            "SUBMITTER".ljust(15),
            "ZZ",
            "RECEIVER".ljust(15),
            "261205",
            "1200",
            repetition,
            version,
            control,
            "1",
            "P",
            component,
        ]
    )
    if body is None:
        body = t.join(
            [
                e.join(["GS", "HC", "SUB", "REC", "20261205", "1200", "77", "X", "005010X222A1"]),
                e.join(["ST", "837", "0001", "005010X222A1"]),
                e.join(["CLM", "PATIENT-1", "125", "", "", component.join(["11", "B", "1"])]),
                e.join(["HI", component.join(["ABK", "I10"]) + repetition + component.join(["ABF", "E119"])]),
                e.join(["SE", "4", "0001"]),
                e.join(["ST", "837", "0002", "005010X222A1"]),
                e.join(["CLM", "PATIENT-2", "80"]),
                e.join(["SE", "3", "0002"]),
                e.join(["GE", "2", "77"]),
                e.join(["IEA", "1", control]),
            ]
        )
    return isa + t + body + t


def x12_seeds() -> list[bytes]:
    """Interchanges as real senders send them: plain, CRLF, a BOM, newline-terminated, two in one file."""
    return [
        interchange().encode(),
        interchange(after="\r\n").encode(),
        ("\ufeff" + interchange()).encode(),
        interchange(element="|", component=">", segment="\n", repetition="!").encode(),
        (
            interchange("000000001") + interchange("000000002", element="^", component="\\", segment="'")
        ).encode(),
        interchange(repetition="U", version="00401").encode(),
    ]


# --------------------------------------------------------------------------------------------------
# Whole 5010 transaction sets, valid for x12sdk's models and balanced, in * : ^ ~ (see ``redelimit``).

_FUNCTIONAL_IDS = {"837": "HC", "835": "HP", "270": "HS", "271": "HB", "834": "BE", "999": "FA"}


def x12_file(
    st01: str, guide: str, sets: list[list[str]], control: str = "000000123", gs06: str = "77"
) -> str:
    """An interchange of one group holding one set per entry of ``sets`` (segments without ST/SE)."""
    body: list[str] = [
        "*".join(["GS", _FUNCTIONAL_IDS.get(st01, "HC"), "SUB", "REC", "20261205", "1200", gs06, "X", guide])
    ]
    for number, segments in enumerate(sets, 1):
        st02 = f"{number:04d}"
        body += [f"ST*{st01}*{st02}*{guide}", *segments, f"SE*{len(segments) + 2}*{st02}"]
    body += [f"GE*{len(sets)}*{gs06}", f"IEA*1*{control}"]
    return interchange(control, body="~".join(body))


def redelimit(text: str, element: str, component: str, segment: str, repetition: str = "^") -> str:
    """The same interchange in other delimiters (the samples hold none of the new characters as data)."""
    table = str.maketrans({"*": element, ":": component, "~": segment, "^": repetition})
    return text.translate(table)


def professional_sets() -> list[str]:
    """An 837P (X222A1) set: a subscriber's claim (2 lines, modifiers) and a dependent's (1 line)."""
    return [
        "BHT*0019*00*BATCH1*20261205*1200*CH",
        "NM1*41*2*GENERAL HOSPITAL BILLING*****46*TGJ23",
        "PER*IC*BILLING OFFICE*TE*5555551234",
        "NM1*40*2*EXAMPLE PAYER*****46*66783JJT",
        "HL*1**20*1",
        "PRV*BI*PXC*207Q00000X",
        "NM1*85*2*GENERAL HOSPITAL*****XX*1234567893",
        "N3*100 MAIN ST",
        "N4*SPRINGFIELD*IL*627010001",
        "REF*EI*123456789",
        "HL*2*1*22*0",
        "SBR*P*18*GRP0001******CI",
        "NM1*IL*1*DOE*JOHN****MI*M000000001",
        "N3*1 ELM ST",
        "N4*SPRINGFIELD*IL*62701",
        "DMG*D8*19700101*M",
        "NM1*PR*2*EXAMPLE PAYER*****PI*66783JJT",
        "CLM*ACCT0000001*125.50***11:B:1*Y*A*Y*Y",
        "HI*ABK:J069*ABF:R509",
        "LX*1",
        "SV1*HC:99213:25*100.25*UN*1***1:2",
        "DTP*472*D8*20261201",
        "LX*2",
        "SV1*HC:87070*25.25*UN*2***1",
        "DTP*472*D8*20261201",
        "HL*3*1*22*1",
        "SBR*S**GRP0002******CI",
        "NM1*IL*1*ROE*ANN****MI*M000000002",
        "N3*2 OAK ST",
        "N4*SPRINGFIELD*IL*62701",
        "DMG*D8*19720202*F",
        "NM1*PR*2*EXAMPLE PAYER*****PI*66783JJT",
        "HL*4*3*23*0",
        "PAT*19",
        "NM1*QC*1*ROE*TIM",
        "N3*2 OAK ST",
        "N4*SPRINGFIELD*IL*62701",
        "DMG*D8*20100303*M",
        "CLM*ACCT0000002*80***11:B:7*Y*A*Y*Y",
        "REF*F8*PAYERCLAIM9",
        "HI*ABK:S6290",
        "LX*1",
        "SV1*HC:99214*80*UN*1***1",
        "DTP*472*D8*20261202",
    ]


def institutional_sets() -> list[str]:
    """An 837I (X223A2) set: one inpatient claim with a statement period, DRG and attending NPI."""
    return [
        "BHT*0019*00*0123*20261205*0932*CH",
        "NM1*41*2*JONES HOSPITAL*****46*12345",
        "PER*IC*JANE DOE*TE*1112223333",
        "NM1*40*2*TRICARE*****46*99999",
        "HL*1**20*1",
        "PRV*BI*PXC*282N00000X",
        "NM1*85*2*JONES HOSPITAL*****XX*1234567893",
        "N3*225 MAIN STREET",
        "N4*ANYWHERE*PA*171110001",
        "REF*EI*123456789",
        "HL*2*1*22*0",
        "SBR*P*18*******CH",
        "NM1*IL*1*DOE*JON****MI*030005074",
        "N3*125 CITY AVENUE",
        "N4*CENTERVILLE*PA*17111",
        "DMG*D8*19681111*M",
        "NM1*PR*2*TRICARE*****PI*99999",
        "CLM*ENC-77*1500.10***11:A:1**A*Y*Y",
        "DTP*434*RD8*20261201-20261203",
        "CL1*1**01",
        "HI*ABK:I214",
        "HI*ABF:E119*ABF:I10",
        "HI*DR:280",
        "NM1*71*1*JONES*JOHN****XX*1122334455",
        "LX*1",
        "SV2*0120*HC:99223*1200.10*UN*3",
        "DTP*472*D8*20261201",
        "LX*2",
        "SV2*0300**300*UN*1",
        "DTP*472*D8*20261202",
    ]


def remittance_sets(plbs: int = 2) -> list[str]:
    """An 835 (X221A1): two claims (claim- and line-level CAS) and ``plbs`` PLB segments (0 to 2).

    BPR02 = CLP04s (80.00 + 0.00) - PLBs (2.50 + 1.25 withheld when both are there).
    """
    withheld = ["PLB*1234567893*20261231*WO:ACCT9*2.50", "PLB*1234567893*20261231*L6:INTEREST*1.25"][:plbs]
    total = {0: "80.00", 1: "77.50", 2: "76.25"}[plbs]
    return [
        f"BPR*I*{total}*C*ACH*CCP*01*999999992*DA*123456*1512345678**01*999988880*DA*98765*20261210",
        "TRN*1*EFT-0001*1512345678",
        "DTM*405*20261210",
        "N1*PR*EXAMPLE PAYER",
        "N3*1 PAYER WAY",
        "N4*CHICAGO*IL*60601",
        "REF*2U*66783JJT",
        "PER*BL*EDI*TE*5555550000",
        "N1*PE*GENERAL HOSPITAL*XX*1234567893",
        "LX*1",
        "CLP*ACCT0000001*1*125.50*80.00*20.00*12*PCN0001",
        "NM1*QC*1*DOE*JOHN****MI*M000000001",
        "SVC*HC:99213:25*100.25*80.00**1",
        "DTM*472*20261201",
        "CAS*CO*45*0.25",
        "CAS*PR*1*20.00",
        "REF*6R*LINE1",
        "SVC*HC:87070*25.25*0**2",
        "DTM*472*20261201",
        "CAS*CO*45*20.25**97*5.00",
        "CLP*ACCT0000002*4*80*0**12*PCN0002",
        "CAS*CO*29*80",
        "NM1*QC*1*ROE*TIM",
        *withheld,
    ]


def inquiry_sets() -> list[str]:
    """A 270 (X279A1) asking about a subscriber and about a dependent of another subscriber."""
    return [
        "BHT*0022*13*10001234*20261205*1319",
        "HL*1**20*1",
        "NM1*PR*2*EXAMPLE PAYER*****PI*66783JJT",
        "HL*2*1*21*1",
        "NM1*1P*2*GENERAL HOSPITAL*****XX*1234567893",
        "HL*3*2*22*0",
        "TRN*1*TRACE-1*9877281234",
        "NM1*IL*1*DOE*JOHN****MI*M000000001",
        "DMG*D8*19700101*M",
        "DTP*291*D8*20261205",
        "EQ*30^1^35",
        "HL*4*2*22*1",
        "NM1*IL*1*ROE*ANN****MI*M000000002",
        "HL*5*4*23*0",
        "TRN*1*TRACE-2*9877281234",
        "NM1*03*1*ROE*TIM",
        "DMG*D8*20100303*M",
        "EQ*30",
    ]


def answer_sets(eb01: str = "1", reject: str = "") -> list[str]:
    """A 271 (X279A1) answering about one subscriber: EB01 ``eb01``, or an AAA rejection ``reject``."""
    about = (
        [f"AAA*N**{reject}*C"]
        if reject
        else [
            "DTP*346*D8*20260101",
            "DTP*347*D8*20261231",
            f"EB*{eb01}*IND*30**GOLD 123 PLAN",
            "EB*C*IND*30***23*500.00*****Y",
            "EB*A*IND*30***27**0.2****Y",
        ]
    )
    return [
        "BHT*0022*11*10001234*20261205*131952",
        "HL*1**20*1",
        "NM1*PR*2*EXAMPLE PAYER*****PI*66783JJT",
        "HL*2*1*21*1",
        "NM1*1P*2*GENERAL HOSPITAL*****XX*1234567893",
        "HL*3*2*22*0",
        "TRN*2*TRACE-1*9877281234",
        "NM1*IL*1*DOE*JOHN****MI*M000000001",
        "REF*6P*GRP0001",
        "N3*1 ELM ST",
        "N4*SPRINGFIELD*IL*62701",
        "DMG*D8*19700101*M",
        *about,
    ]
