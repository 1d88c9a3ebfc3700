"""Build the demo master-data set: an invented three-hospital network, consistent and fit to load.

    python -m cluster.masterdata.build_demo [OUT_DIR]     (default: cluster/masterdata/demo/)

The set is built from the curated tables below (no randomness except a seeded source for provider
NPIs), written with :func:`canonical.reference_files.write_set` and read back with ``read_set`` to prove it
is valid. It covers every facility, department, charge code, supply and drug that the synthetic day
(:mod:`cluster.synth`) sends, plus enough realistic surrounding data to make a credible demo: a chart of
accounts, the ERP organisation hierarchy, points of care, clinicians, an item master and payers.

Every organisation, clinician and identifier here is invented. CPT/HCPCS codes and NDC labeller
prefixes are real code formats; prices, costs and product codes are illustrative only.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Sequence
from pathlib import Path

from canonical.reference import (
    AccountType,
    BusinessUnit,
    ChargeCode,
    ClaimKind,
    CostCentre,
    Department,
    Facility,
    GlAccount,
    Item,
    ItemCategory,
    LegalEntity,
    Location,
    MasterDataManifest,
    MasterDataSet,
    Payer,
    PayerType,
    Provider,
    SourceOfRecord,
)
from canonical.reference_files import read_set, write_set
from cluster.masterdata import DEMO_DIR

VERSION = "2026.11.1"
DESCRIPTION = (
    "Demo master data for the North Memorial Health / St. Vincent Health System network (NMH, SVH, RCH): "
    "organisation, chart of accounts, points of care, clinicians, item and charge masters and payers. "
    "Invented for demonstration; covers every code the synthetic hospital day sends."
)

# --- Registry: the system of record and owning team of each domain ---------------------------------------

_ERP = "Workday Financials"
_ERP_ORG = "Workday Financials (organisation hierarchy)"
REGISTRY: tuple[tuple[str, str, str], ...] = (
    ("accounts", _ERP, "Finance - General Ledger"),
    ("legal_entities", _ERP_ORG, "Finance - Corporate Accounting"),
    ("business_units", _ERP_ORG, "Finance - Corporate Accounting"),
    ("cost_centres", _ERP_ORG, "Finance - Financial Planning and Analysis"),
    ("facilities", _ERP_ORG, "Finance - Corporate Accounting"),
    ("departments", _ERP_ORG, "Finance - Financial Planning and Analysis"),
    ("locations", "Epic ADT bed and location build", "Patient Access - Bed Management"),
    ("providers", "symplr Provider credentialing", "Medical Staff Services"),
    ("items", "Infor CloudSuite Supply Management", "Materials Management"),
    ("charge_codes", "Epic Resolute charge description master", "Revenue Integrity"),
    ("payers", "Epic Resolute payer and plan master", "Managed Care Contracting"),
)

# --- Chart of accounts ---------------------------------------------------------------------------------

_A, _L, _E, _R, _X = (
    AccountType.ASSET,
    AccountType.LIABILITY,
    AccountType.EQUITY,
    AccountType.REVENUE,
    AccountType.EXPENSE,
)
RECEIVABLES = "1200"
SUPPLY_INVENTORY = "1400"
PHARMACY_INVENTORY = "1410"
IMPLANT_INVENTORY = "1420"

# Revenue accounts by service line.
INPATIENT = "4010"
CRITICAL_CARE = "4020"
EMERGENCY = "4100"
LABORATORY = "4200"
RADIOLOGY = "4300"
PHARMACY = "4400"
CARDIOLOGY = "4500"
SURGERY = "4600"
THERAPY = "4650"
ONCOLOGY = "4700"
OBSTETRICS = "4800"
SUPPLIES = "4900"
PROFESSIONAL = "4950"

# (account, name, type, active)
ACCOUNTS: tuple[tuple[str, str, AccountType, bool], ...] = (
    ("1010", "Cash - operating", _A, True),
    ("1020", "Cash - payroll", _A, True),
    ("1100", "Short-term investments", _A, True),
    (RECEIVABLES, "Patient accounts receivable", _A, True),
    ("1210", "Allowance for uncollectible accounts", _A, True),
    ("1250", "Third-party settlements receivable", _A, True),
    ("1300", "Other receivables", _A, True),
    (SUPPLY_INVENTORY, "Medical-surgical supplies inventory", _A, True),
    (PHARMACY_INVENTORY, "Pharmacy inventory", _A, True),
    (IMPLANT_INVENTORY, "Implant inventory", _A, True),
    ("1430", "Central sterile supply inventory (retired, merged into 1400)", _A, False),
    ("1500", "Prepaid expenses", _A, True),
    ("1700", "Property, plant and equipment", _A, True),
    ("1750", "Accumulated depreciation", _A, True),
    ("2010", "Accounts payable - trade", _L, True),
    ("2050", "Goods received not invoiced", _L, True),
    ("2100", "Accrued salaries and wages", _L, True),
    ("2150", "Accrued paid time off", _L, True),
    ("2200", "Estimated third-party payer settlements", _L, True),
    ("2300", "Patient credit balances", _L, True),
    ("2500", "Long-term debt - revenue bonds", _L, True),
    ("3000", "Net assets without donor restrictions", _E, True),
    ("3100", "Net assets with donor restrictions", _E, True),
    (INPATIENT, "Inpatient routine services revenue", _R, True),
    (CRITICAL_CARE, "Intensive care services revenue", _R, True),
    ("4050", "Observation services revenue", _R, True),
    (EMERGENCY, "Emergency services revenue", _R, True),
    (LABORATORY, "Laboratory services revenue", _R, True),
    (RADIOLOGY, "Radiology and imaging revenue", _R, True),
    (PHARMACY, "Pharmacy revenue", _R, True),
    (CARDIOLOGY, "Cardiology services revenue", _R, True),
    (SURGERY, "Surgery and orthopedics revenue", _R, True),
    (THERAPY, "Rehabilitation and respiratory therapy revenue", _R, True),
    (ONCOLOGY, "Oncology and infusion revenue", _R, True),
    (OBSTETRICS, "Obstetrics and newborn revenue", _R, True),
    (SUPPLIES, "Medical supplies and implants revenue", _R, True),
    (PROFESSIONAL, "Professional fees revenue", _R, True),
    ("4960", "Contractual allowances - Medicare", _R, True),
    ("4961", "Contractual allowances - Medicaid", _R, True),
    ("4962", "Contractual allowances - commercial and managed care", _R, True),
    ("4970", "Charity care", _R, True),
    ("4980", "Provision for bad debts", _R, True),
    ("4990", "Other operating revenue", _R, True),
    ("5010", "Salaries and wages", _X, True),
    ("5100", "Employee benefits", _X, True),
    ("5200", "Medical-surgical supplies expense", _X, True),
    ("5210", "Drug expense", _X, True),
    ("5220", "Implant expense", _X, True),
    ("5230", "Inventory shrinkage and expired stock", _X, True),
    ("5300", "Purchased services", _X, True),
    ("5400", "Depreciation and amortization", _X, True),
    ("5500", "Utilities", _X, True),
    ("5600", "Repairs and maintenance", _X, True),
    ("5700", "Interest expense", _X, True),
    ("5800", "Professional liability insurance", _X, True),
)

# --- Organisation ----------------------------------------------------------------------------------------

# (code, name)
LEGAL_ENTITIES: tuple[tuple[str, str], ...] = (
    ("NMHC", "North Memorial Health Corporation"),
    ("SVHS", "St. Vincent Health System"),
    ("NPP", "Northland Physician Partners, LLC"),
)
# (code, name, legal entity)
BUSINESS_UNITS: tuple[tuple[str, str, str], ...] = (
    ("BU-NMH", "North Memorial Hospital", "NMHC"),
    ("BU-RCH", "Riverside Community Hospital", "NMHC"),
    ("BU-SVH", "St. Vincent Hospital", "SVHS"),
    ("BU-NPP", "Northland Physician Partners", "NPP"),
)
# (code, name, legal entity, business unit, city, state, short name used in cost centre names)
# Billing identity of each facility (837 loop 2010AA): NPI, EIN, street, ZIP, taxonomy (282N00000X:
# general acute care hospital). Invented; the NPIs carry a valid Luhn check digit (prefix 80840).
FACILITY_BILLING: dict[str, tuple[str, str, str, str, str]] = {
    "NMH": ("1417921545", "410991234", "3300 Oakdale Ave N", "550571234", "282N00000X"),
    "SVH": ("1528030723", "416012345", "45 W 10th St", "551021101", "282N00000X"),
    "RCH": ("1639141807", "390987654", "800 Riverside Dr", "540224400", "282N00000X"),
}
# NUBC revenue code of a charge code's institutional claim line, by the revenue account it posts to.
REVENUE_CODES: dict[str, str] = {
    "4010": "0110",  # room and board, private
    "4020": "0200",  # intensive care
    "4050": "0762",  # observation room
    "4100": "0450",  # emergency room
    "4200": "0300",  # laboratory
    "4300": "0320",  # radiology, diagnostic
    "4400": "0250",  # pharmacy
    "4500": "0480",  # cardiology
    "4600": "0360",  # operating room services
    "4650": "0420",  # physical therapy
    "4700": "0335",  # chemotherapy, IV
    "4800": "0720",  # labour room and delivery
    "4900": "0270",  # medical and surgical supplies
    "4950": "0960",  # professional fees (billed on an 837P; kept for completeness)
}
# Charge codes posted to this revenue account are professional fees: billed on an 837P.
PROFESSIONAL_FEES = "4950"
FACILITIES: tuple[tuple[str, str, str, str, str, str, str], ...] = (
    ("NMH", "North Memorial Hospital", "NMHC", "BU-NMH", "Northfield", "MN", "North Memorial"),
    ("SVH", "St. Vincent Hospital", "SVHS", "BU-SVH", "Saint Paul", "MN", "St. Vincent"),
    ("RCH", "Riverside Community Hospital", "NMHC", "BU-RCH", "Riverside", "WI", "Riverside"),
)

# Department code -> (name, cost centre number); the cost centre is "<facility>-<number>".
DEPARTMENT_TYPES: dict[str, tuple[str, str]] = {
    "MEDSURG": ("Medical-Surgical Nursing", "6010"),
    "ICU": ("Intensive Care Unit", "6100"),
    "CARD": ("Cardiology and Cardiovascular Services", "6200"),
    "ONC": ("Oncology and Infusion Services", "6300"),
    "ORTHO": ("Orthopedics", "6400"),
    "OBGYN": ("Obstetrics and Gynecology", "6500"),
    "PEDS": ("Pediatrics", "6600"),
    "NICU": ("Neonatal Intensive Care Unit", "6700"),
    "ED": ("Emergency Department", "7010"),
    "SURG": ("Perioperative Services", "7100"),
    "RAD": ("Radiology and Imaging", "7200"),
    "LAB": ("Laboratory Services", "7300"),
    "PHARM": ("Pharmacy", "7400"),
    "RESP": ("Respiratory Therapy", "7500"),
    "PT": ("Rehabilitation Services", "7600"),
}
# The departments of each facility: those the synthetic day sends, then the others.
_SYNTH_DEPARTMENTS: dict[str, tuple[str, ...]] = {
    "NMH": ("ED", "ICU", "MEDSURG", "CARD", "RAD", "LAB", "PHARM", "ORTHO", "ONC"),
    "SVH": ("ED", "ICU", "MEDSURG", "CARD", "RAD", "LAB", "PHARM", "OBGYN", "ONC"),
    "RCH": ("ED", "MEDSURG", "RAD", "LAB", "PHARM", "ORTHO", "OBGYN"),
}
_OTHER_DEPARTMENTS: dict[str, tuple[str, ...]] = {
    "NMH": ("SURG", "PT", "RESP", "PEDS"),
    "SVH": ("SURG", "NICU", "RESP", "PT"),
    "RCH": ("SURG", "PT"),
}
FACILITY_DEPARTMENTS = {
    code: _SYNTH_DEPARTMENTS[code] + _OTHER_DEPARTMENTS[code] for code in _SYNTH_DEPARTMENTS
}
# The one closed unit: North Memorial's inpatient pediatrics moved to St. Vincent; its cost centre is closed
# to postings while the EHR department still exists.
CLOSED_DEPARTMENTS = {("NMH", "PEDS"): "closed 2025-06-30, service moved to St. Vincent"}
# Cost centres of the physician group that no hospital department owns: (code, name).
GROUP_COST_CENTRES: tuple[tuple[str, str], ...] = (
    ("NPP-9100", "Northland Physician Partners Hospitalist Program"),
    ("NPP-9200", "Northland Physician Partners Emergency Physicians"),
    ("NPP-9300", "Northland Physician Partners Anesthesia Services"),
)

# Points of care: (facility, code, name, department, kind, active)
LOCATIONS: tuple[tuple[str, str, str, str, str, bool], ...] = (
    ("NMH", "ED-MAIN", "Emergency Department main treatment area", "ED", "bay", True),
    ("NMH", "ED-FT", "Emergency Department fast track", "ED", "bay", True),
    ("NMH", "ED-TRAUMA", "Trauma bays", "ED", "bay", True),
    ("NMH", "ED-OBS", "ED observation unit", "ED", "unit", True),
    ("NMH", "MICU", "Medical ICU", "ICU", "unit", True),
    ("NMH", "CVICU", "Cardiovascular ICU", "ICU", "unit", True),
    ("NMH", "4W", "4 West medical-surgical", "MEDSURG", "unit", True),
    ("NMH", "4E", "4 East medical-surgical", "MEDSURG", "unit", True),
    ("NMH", "3N", "3 North cardiac telemetry", "CARD", "unit", True),
    ("NMH", "CATH", "Cardiac catheterization lab", "CARD", "suite", True),
    ("NMH", "ECHO", "Echocardiography lab", "CARD", "suite", True),
    ("NMH", "5E", "5 East orthopedic unit", "ORTHO", "unit", True),
    ("NMH", "ORTHO-CL", "Orthopedic clinic", "ORTHO", "clinic", True),
    ("NMH", "6N", "6 North oncology unit", "ONC", "unit", True),
    ("NMH", "INF", "Cancer center infusion suite", "ONC", "clinic", True),
    ("NMH", "XR", "General radiography", "RAD", "suite", True),
    ("NMH", "CT1", "CT scanner 1", "RAD", "suite", True),
    ("NMH", "MRI1", "MRI scanner 1", "RAD", "suite", True),
    ("NMH", "IR", "Interventional radiology suite", "RAD", "suite", True),
    ("NMH", "CORE-LAB", "Core laboratory", "LAB", "lab", True),
    ("NMH", "BLOOD-BANK", "Blood bank and transfusion service", "LAB", "lab", True),
    ("NMH", "IP-PHARM", "Inpatient pharmacy", "PHARM", "pharmacy", True),
    ("NMH", "PREOP", "Pre-operative holding", "SURG", "unit", True),
    ("NMH", "OR1", "Operating room 1", "SURG", "theatre", True),
    ("NMH", "OR2", "Operating room 2", "SURG", "theatre", True),
    ("NMH", "OR3", "Operating room 3", "SURG", "theatre", True),
    ("NMH", "OR4", "Operating room 4 (hybrid)", "SURG", "theatre", True),
    ("NMH", "PACU", "Post-anesthesia care unit", "SURG", "unit", True),
    ("NMH", "REHAB-GYM", "Inpatient rehabilitation gym", "PT", "clinic", True),
    ("NMH", "PFT", "Pulmonary function lab", "RESP", "lab", True),
    ("NMH", "3E", "3 East pediatrics (closed)", "PEDS", "unit", False),
    ("SVH", "ED-MAIN", "Emergency Department main treatment area", "ED", "bay", True),
    ("SVH", "ED-FT", "Emergency Department fast track", "ED", "bay", True),
    ("SVH", "ED-PEDS", "Pediatric emergency bays", "ED", "bay", True),
    ("SVH", "SICU", "Surgical ICU", "ICU", "unit", True),
    ("SVH", "MICU", "Medical ICU", "ICU", "unit", True),
    ("SVH", "2N", "2 North medical-surgical", "MEDSURG", "unit", True),
    ("SVH", "2S", "2 South medical-surgical", "MEDSURG", "unit", True),
    ("SVH", "3W", "3 West cardiac telemetry", "CARD", "unit", True),
    ("SVH", "CATH", "Cardiac catheterization lab", "CARD", "suite", True),
    ("SVH", "LD", "Labor and delivery", "OBGYN", "unit", True),
    ("SVH", "MB", "Mother-baby unit", "OBGYN", "unit", True),
    ("SVH", "WH-CL", "Women's health clinic", "OBGYN", "clinic", True),
    ("SVH", "NICU-POD", "NICU level III pods", "NICU", "unit", True),
    ("SVH", "7E", "7 East oncology unit", "ONC", "unit", True),
    ("SVH", "INF", "Infusion center", "ONC", "clinic", True),
    ("SVH", "XR", "General radiography", "RAD", "suite", True),
    ("SVH", "CT1", "CT scanner 1", "RAD", "suite", True),
    ("SVH", "US", "Ultrasound", "RAD", "suite", True),
    ("SVH", "MRI1", "MRI scanner 1", "RAD", "suite", True),
    ("SVH", "CORE-LAB", "Core laboratory", "LAB", "lab", True),
    ("SVH", "IP-PHARM", "Inpatient pharmacy", "PHARM", "pharmacy", True),
    ("SVH", "OR1", "Operating room 1", "SURG", "theatre", True),
    ("SVH", "OR2", "Operating room 2", "SURG", "theatre", True),
    ("SVH", "OR-CS", "Cesarean section theatre", "SURG", "theatre", True),
    ("SVH", "PACU", "Post-anesthesia care unit", "SURG", "unit", True),
    ("SVH", "PFT", "Pulmonary function lab", "RESP", "lab", True),
    ("SVH", "REHAB-OP", "Outpatient rehabilitation clinic", "PT", "clinic", True),
    ("RCH", "ED-MAIN", "Emergency Department", "ED", "bay", True),
    ("RCH", "ED-FT", "Emergency Department fast track", "ED", "bay", True),
    ("RCH", "2W", "2 West medical-surgical", "MEDSURG", "unit", True),
    ("RCH", "2E", "2 East medical-surgical and swing beds", "MEDSURG", "unit", True),
    ("RCH", "ORTHO-CL", "Orthopedic and sports medicine clinic", "ORTHO", "clinic", True),
    ("RCH", "FBC", "Family birth center", "OBGYN", "unit", True),
    ("RCH", "XR", "General radiography", "RAD", "suite", True),
    ("RCH", "CT1", "CT scanner", "RAD", "suite", True),
    ("RCH", "US", "Ultrasound", "RAD", "suite", True),
    ("RCH", "CORE-LAB", "Laboratory", "LAB", "lab", True),
    ("RCH", "IP-PHARM", "Pharmacy", "PHARM", "pharmacy", True),
    ("RCH", "OR1", "Operating room 1", "SURG", "theatre", True),
    ("RCH", "OR2", "Operating room 2", "SURG", "theatre", True),
    ("RCH", "PACU", "Post-anesthesia care unit", "SURG", "unit", True),
    ("RCH", "REHAB", "Rehabilitation services clinic", "PT", "clinic", True),
)

# --- Providers ---------------------------------------------------------------------------------------------

# (family name, given name, specialty, facility, department, active); NPIs are assigned by _npis().
PROVIDERS: tuple[tuple[str, str, str, str, str, bool], ...] = (
    ("Alvarez-Brandt", "Teresa", "Emergency Medicine", "NMH", "ED", True),
    ("Okonjo", "Femi", "Emergency Medicine", "NMH", "ED", True),
    ("Hollis", "Dana", "Nurse Practitioner, Emergency", "NMH", "ED", True),
    ("Halvorsen", "Kirsten", "Critical Care Medicine", "NMH", "ICU", True),
    ("Desai", "Rohan", "Hospital Medicine", "NMH", "MEDSURG", True),
    ("Lundqvist", "Marit", "Hospital Medicine", "NMH", "MEDSURG", True),
    ("Abernathy", "Colin", "Cardiovascular Disease", "NMH", "CARD", True),
    ("Tran", "Minh-Anh", "Interventional Cardiology", "NMH", "CARD", True),
    ("Whitcombe", "Gareth", "Diagnostic Radiology", "NMH", "RAD", True),
    ("Moreau", "Celine", "Anatomic and Clinical Pathology", "NMH", "LAB", True),
    ("Fairbanks", "Jonah", "Orthopedic Surgery", "NMH", "ORTHO", True),
    ("Szabo", "Ildiko", "Medical Oncology", "NMH", "ONC", True),
    ("Brennan-Kaur", "Simran", "General Surgery", "NMH", "SURG", True),
    ("Ostrowski", "Pawel", "Anesthesiology", "NMH", "SURG", True),
    ("Adeyemi", "Tobi", "Physical Medicine and Rehabilitation", "NMH", "PT", True),
    ("Ruiz-Galvan", "Pilar", "Pulmonary Disease", "NMH", "RESP", True),
    ("Gustafson", "Ingrid", "Pediatrics", "NMH", "PEDS", False),
    ("Nakashima", "Ren", "Hospital Medicine (telehospitalist)", "NMH", "", True),
    ("Castellano", "Marco", "Emergency Medicine", "SVH", "ED", True),
    ("Nwosu", "Adaeze", "Emergency Medicine", "SVH", "ED", True),
    ("Becker", "Lorenz", "Critical Care Medicine", "SVH", "ICU", True),
    ("Yamamoto", "Keiko", "Hospital Medicine", "SVH", "MEDSURG", True),
    ("Farouk", "Samir", "Hospital Medicine", "SVH", "MEDSURG", True),
    ("Delacroix", "Amelie", "Cardiovascular Disease", "SVH", "CARD", True),
    ("Petrov", "Anton", "Diagnostic Radiology", "SVH", "RAD", True),
    ("Whitfield", "Norah", "Clinical Pathology", "SVH", "LAB", True),
    ("Oyelaran", "Bisi", "Obstetrics and Gynecology", "SVH", "OBGYN", True),
    ("Lindgren", "Sofie", "Certified Nurse Midwife", "SVH", "OBGYN", True),
    ("Haddadi", "Reza", "Hematology and Oncology", "SVH", "ONC", True),
    ("Kowalczyk", "Ewa", "Neonatal-Perinatal Medicine", "SVH", "NICU", True),
    ("McAllister", "Fergus", "General Surgery", "SVH", "SURG", True),
    ("Quispe", "Rosa", "Pulmonary Disease", "SVH", "RESP", True),
    ("Engstrand", "Mikael", "Physical Therapist", "SVH", "PT", True),
    ("Thorsen", "Erik", "Family Medicine (emergency)", "RCH", "ED", True),
    ("Baptiste", "Nadine", "Emergency Medicine", "RCH", "ED", True),
    ("Kaminski", "Greta", "Hospital Medicine", "RCH", "MEDSURG", True),
    ("Osei-Bonsu", "Kwabena", "Diagnostic Radiology (teleradiology)", "RCH", "RAD", True),
    ("Iqbal", "Hina", "Clinical Pathology", "RCH", "LAB", True),
    ("Vandenberg", "Pieter", "Orthopedic Surgery", "RCH", "ORTHO", True),
    ("Ahlstrom", "Britta", "Family Medicine Obstetrics", "RCH", "OBGYN", True),
    ("Rasmussen", "Tove", "General Surgery", "RCH", "SURG", True),
    ("Engebretsen", "Lars", "Physical Therapist", "RCH", "PT", True),
)
_NPI_SEED = 20261101

# --- Payers ---------------------------------------------------------------------------------------------

# (payer id, name, type, plan)
PAYERS: tuple[tuple[str, str, PayerType, str], ...] = (
    ("MCR-A", "Medicare Part A", PayerType.MEDICARE, "Hospital insurance (Part A)"),
    ("MCR-B", "Medicare Part B", PayerType.MEDICARE, "Medical insurance (Part B)"),
    ("MCD-MN", "Minnesota Medical Assistance", PayerType.MEDICAID, "Fee-for-service"),
    ("MCD-WI", "Wisconsin Medicaid (ForwardHealth)", PayerType.MEDICAID, "Fee-for-service"),
    ("BCBS-MN", "Blue Cross and Blue Shield of Minnesota", PayerType.COMMERCIAL, "PPO"),
    ("UHC", "UnitedHealthcare", PayerType.COMMERCIAL, "Choice Plus"),
    ("AETNA", "Aetna", PayerType.COMMERCIAL, "Open Access Managed Choice"),
    ("CIGNA", "Cigna Healthcare", PayerType.COMMERCIAL, "Open Access Plus"),
    ("HP", "HealthPartners", PayerType.COMMERCIAL, "Open Access"),
    ("MEDICA", "Medica", PayerType.COMMERCIAL, "Choice Passport"),
    ("UCARE-MA", "UCare Medicare Advantage", PayerType.MANAGED_CARE, "Medicare Advantage HMO-POS"),
    ("HP-MSHO", "HealthPartners Minnesota Senior Health Options", PayerType.MANAGED_CARE, "MSHO"),
    ("BCBS-MN-PMAP", "Blue Plus Prepaid Medical Assistance", PayerType.MANAGED_CARE, "PMAP"),
    ("SFM-WC", "SFM Mutual Insurance (workers' compensation)", PayerType.WORKERS_COMP, ""),
    ("WC-WI", "Wisconsin workers' compensation carriers", PayerType.WORKERS_COMP, ""),
    ("TRICARE", "TRICARE North Region", PayerType.OTHER, "TRICARE Select"),
    ("VA-CCN", "VA Community Care Network", PayerType.OTHER, "Region 2"),
    ("SELF", "Self-pay", PayerType.SELF_PAY, ""),
)

# --- Charge description master ---------------------------------------------------------------------------

# (code, code system, description, revenue account, price in cents). The first block is what the
# synthetic day sends (at its FT1-12 unit price); the rest rounds out a credible charge master.
CHARGE_CODES: tuple[tuple[str, str, str, str, int], ...] = (
    # Synthetic day: ED visits, admissions and each department's catalogue.
    ("99283", "CPT", "ED visit, moderate severity", EMERGENCY, 45_000),
    ("99284", "CPT", "ED visit, high severity", EMERGENCY, 72_500),
    ("99285", "CPT", "ED visit, high complexity", EMERGENCY, 105_000),
    ("99222", "CPT", "Initial hospital care, moderate", PROFESSIONAL, 31_500),
    ("99223", "CPT", "Initial hospital care, high", PROFESSIONAL, 46_500),
    ("12002", "CPT", "Simple repair of wound, 2.6-7.5 cm", EMERGENCY, 38_500),
    ("96374", "CPT", "IV push, single or initial drug", EMERGENCY, 16_500),
    ("51702", "CPT", "Insertion of temporary bladder catheter", EMERGENCY, 11_000),
    ("99291", "CPT", "Critical care, first 30-74 minutes", CRITICAL_CARE, 68_000),
    ("99292", "CPT", "Critical care, each additional 30 minutes", CRITICAL_CARE, 31_000),
    ("31500", "CPT", "Emergency endotracheal intubation", CRITICAL_CARE, 54_000),
    ("99232", "CPT", "Subsequent hospital care", PROFESSIONAL, 14_000),
    ("97116", "CPT", "Gait training therapy, 15 min", THERAPY, 6_500),
    ("94640", "CPT", "Nebulizer treatment", THERAPY, 4_800),
    ("93000", "CPT", "Electrocardiogram, 12-lead with interpretation", CARDIOLOGY, 8_500),
    ("93306", "CPT", "Echocardiogram, transthoracic, complete", CARDIOLOGY, 160_000),
    ("93017", "CPT", "Cardiovascular stress test, tracing only", CARDIOLOGY, 42_000),
    ("71046", "CPT", "X-ray chest, 2 views", RADIOLOGY, 18_500),
    ("70450", "CPT", "CT head without contrast", RADIOLOGY, 125_000),
    ("74177", "CPT", "CT abdomen & pelvis with contrast", RADIOLOGY, 285_000),
    ("73610", "CPT", "X-ray ankle, 3+ views", RADIOLOGY, 16_000),
    ("80053", "CPT", "Comprehensive metabolic panel", LABORATORY, 9_800),
    ("85025", "CPT", "Complete blood count with automated differential", LABORATORY, 4_500),
    ("36415", "CPT", "Routine venipuncture", LABORATORY, 1_500),
    ("84484", "CPT", "Troponin, quantitative", LABORATORY, 7_200),
    ("81001", "CPT", "Urinalysis with microscopy", LABORATORY, 2_800),
    ("J1100", "HCPCS", "Dexamethasone sodium phosphate, 1 mg", PHARMACY, 350),
    ("J2405", "HCPCS", "Ondansetron HCl, per 1 mg", PHARMACY, 280),
    ("J7030", "HCPCS", "Normal saline solution infusion, 1000 cc", PHARMACY, 4_200),
    ("J0696", "HCPCS", "Ceftriaxone sodium, per 250 mg", PHARMACY, 1_150),
    ("29125", "CPT", "Application of short arm splint, static", SURGERY, 21_000),
    ("27786", "CPT", "Closed treatment of distal fibular fracture", SURGERY, 95_000),
    ("20610", "CPT", "Arthrocentesis, major joint", SURGERY, 26_000),
    ("96413", "CPT", "Chemotherapy IV infusion, up to 1 hour", ONCOLOGY, 62_000),
    ("96415", "CPT", "Chemotherapy IV infusion, each additional hour", ONCOLOGY, 13_500),
    ("J9045", "HCPCS", "Carboplatin, 50 mg", ONCOLOGY, 2_100),
    ("59025", "CPT", "Fetal non-stress test", OBSTETRICS, 15_500),
    ("59400", "CPT", "Routine obstetric care, vaginal delivery", OBSTETRICS, 420_000),
    ("76815", "CPT", "Ultrasound, pregnant uterus, limited", OBSTETRICS, 24_000),
    # Evaluation and management.
    ("99202", "CPT", "Office visit, new patient, straightforward", PROFESSIONAL, 14_500),
    ("99203", "CPT", "Office visit, new patient, low complexity", PROFESSIONAL, 21_000),
    ("99204", "CPT", "Office visit, new patient, moderate complexity", PROFESSIONAL, 32_000),
    ("99205", "CPT", "Office visit, new patient, high complexity", PROFESSIONAL, 41_500),
    ("99211", "CPT", "Office visit, established patient, minimal", PROFESSIONAL, 4_500),
    ("99212", "CPT", "Office visit, established patient, straightforward", PROFESSIONAL, 9_500),
    ("99213", "CPT", "Office visit, established patient, low complexity", PROFESSIONAL, 15_500),
    ("99214", "CPT", "Office visit, established patient, moderate complexity", PROFESSIONAL, 22_500),
    ("99215", "CPT", "Office visit, established patient, high complexity", PROFESSIONAL, 30_500),
    ("99221", "CPT", "Initial hospital care, straightforward or low", PROFESSIONAL, 21_500),
    ("99231", "CPT", "Subsequent hospital care, straightforward or low", PROFESSIONAL, 9_500),
    ("99233", "CPT", "Subsequent hospital care, high", PROFESSIONAL, 20_500),
    ("99238", "CPT", "Hospital discharge day management, 30 minutes or less", PROFESSIONAL, 14_500),
    ("99239", "CPT", "Hospital discharge day management, more than 30 minutes", PROFESSIONAL, 21_000),
    ("99281", "CPT", "ED visit, may not require physician presence", EMERGENCY, 9_500),
    ("99282", "CPT", "ED visit, straightforward", EMERGENCY, 21_500),
    ("99460", "CPT", "Initial newborn care, hospital", OBSTETRICS, 28_500),
    ("99468", "CPT", "Initial neonatal critical care, per day", CRITICAL_CARE, 235_000),
    ("G0378", "HCPCS", "Hospital observation service, per hour", "4050", 6_500),
    # Emergency and bedside procedures.
    ("12001", "CPT", "Simple repair of wound, 2.5 cm or less", EMERGENCY, 27_500),
    ("12004", "CPT", "Simple repair of wound, 7.6-12.5 cm", EMERGENCY, 52_000),
    ("10060", "CPT", "Incision and drainage of abscess, simple", EMERGENCY, 34_500),
    ("96360", "CPT", "IV hydration, initial 31 minutes to 1 hour", EMERGENCY, 29_500),
    ("96361", "CPT", "IV hydration, each additional hour", EMERGENCY, 8_500),
    ("96365", "CPT", "IV infusion for therapy, initial up to 1 hour", EMERGENCY, 36_000),
    ("96375", "CPT", "IV push, each additional sequential drug", EMERGENCY, 9_500),
    ("92950", "CPT", "Cardiopulmonary resuscitation", EMERGENCY, 145_000),
    ("36556", "CPT", "Insertion of non-tunneled central venous catheter, age 5+", CRITICAL_CARE, 98_000),
    ("36600", "CPT", "Arterial puncture, withdrawal of blood for diagnosis", CRITICAL_CARE, 9_500),
    ("36620", "CPT", "Arterial catheterization for monitoring, percutaneous", CRITICAL_CARE, 42_000),
    ("94002", "CPT", "Ventilation management, hospital inpatient, initial day", CRITICAL_CARE, 58_000),
    ("94003", "CPT", "Ventilation management, hospital inpatient, subsequent day", CRITICAL_CARE, 41_000),
    # Laboratory.
    ("80048", "CPT", "Basic metabolic panel", LABORATORY, 7_400),
    ("80061", "CPT", "Lipid panel", LABORATORY, 8_900),
    ("80076", "CPT", "Hepatic function panel", LABORATORY, 7_900),
    ("82947", "CPT", "Glucose, quantitative, blood", LABORATORY, 2_400),
    ("83036", "CPT", "Hemoglobin A1c", LABORATORY, 6_100),
    ("84443", "CPT", "Thyroid stimulating hormone", LABORATORY, 9_600),
    ("85027", "CPT", "Complete blood count, automated", LABORATORY, 3_900),
    ("85610", "CPT", "Prothrombin time", LABORATORY, 2_900),
    ("85730", "CPT", "Partial thromboplastin time", LABORATORY, 4_100),
    ("83880", "CPT", "Natriuretic peptide (BNP)", LABORATORY, 16_500),
    ("82803", "CPT", "Blood gases, any combination", LABORATORY, 12_500),
    ("83605", "CPT", "Lactate", LABORATORY, 5_600),
    ("83735", "CPT", "Magnesium", LABORATORY, 3_400),
    ("84100", "CPT", "Phosphorus, inorganic", LABORATORY, 2_900),
    ("86140", "CPT", "C-reactive protein", LABORATORY, 4_200),
    ("85652", "CPT", "Sedimentation rate, automated", LABORATORY, 2_700),
    ("84702", "CPT", "Gonadotropin, chorionic (hCG), quantitative", LABORATORY, 7_800),
    ("81025", "CPT", "Urine pregnancy test, visual color comparison", LABORATORY, 2_200),
    ("81003", "CPT", "Urinalysis, automated, without microscopy", LABORATORY, 1_900),
    ("86900", "CPT", "Blood typing, ABO", LABORATORY, 3_100),
    ("86901", "CPT", "Blood typing, Rh (D)", LABORATORY, 3_100),
    ("86850", "CPT", "Antibody screen, RBC", LABORATORY, 6_400),
    ("87040", "CPT", "Blood culture, bacterial, with isolation", LABORATORY, 9_900),
    ("87086", "CPT", "Urine culture, bacterial, quantitative colony count", LABORATORY, 6_800),
    ("87635", "CPT", "SARS-CoV-2 amplified probe technique", LABORATORY, 14_500),
    ("88305", "CPT", "Surgical pathology, gross and microscopic, level IV", LABORATORY, 32_000),
    ("P9016", "HCPCS", "Red blood cells, leukocytes reduced, each unit", LABORATORY, 98_000),
    ("36430", "CPT", "Transfusion, blood or blood components", LABORATORY, 48_500),
    # Radiology and imaging.
    ("71045", "CPT", "X-ray chest, single view", RADIOLOGY, 14_000),
    ("72100", "CPT", "X-ray lumbosacral spine, 2 or 3 views", RADIOLOGY, 21_500),
    ("73030", "CPT", "X-ray shoulder, minimum 2 views", RADIOLOGY, 17_500),
    ("73562", "CPT", "X-ray knee, 3 views", RADIOLOGY, 19_000),
    ("73502", "CPT", "X-ray hip, unilateral, 2-3 views", RADIOLOGY, 19_500),
    ("73630", "CPT", "X-ray foot, complete, minimum 3 views", RADIOLOGY, 16_500),
    ("74018", "CPT", "X-ray abdomen, 1 view", RADIOLOGY, 13_500),
    ("71260", "CPT", "CT thorax with contrast", RADIOLOGY, 198_000),
    ("71275", "CPT", "CT angiography, chest", RADIOLOGY, 265_000),
    ("74176", "CPT", "CT abdomen and pelvis without contrast", RADIOLOGY, 225_000),
    ("70486", "CPT", "CT maxillofacial area without contrast", RADIOLOGY, 142_000),
    ("72125", "CPT", "CT cervical spine without contrast", RADIOLOGY, 158_000),
    ("70551", "CPT", "MRI brain without contrast", RADIOLOGY, 245_000),
    ("70553", "CPT", "MRI brain without and with contrast", RADIOLOGY, 340_000),
    ("72148", "CPT", "MRI lumbar spine without contrast", RADIOLOGY, 238_000),
    ("73721", "CPT", "MRI lower extremity joint without contrast", RADIOLOGY, 226_000),
    ("76700", "CPT", "Ultrasound abdomen, complete", RADIOLOGY, 62_000),
    ("76705", "CPT", "Ultrasound abdomen, limited", RADIOLOGY, 41_000),
    ("76856", "CPT", "Ultrasound pelvic, non-obstetric, complete", RADIOLOGY, 52_000),
    ("93971", "CPT", "Duplex scan of extremity veins, unilateral or limited", RADIOLOGY, 48_500),
    ("77067", "CPT", "Screening mammography, bilateral, with CAD", RADIOLOGY, 38_500),
    # Cardiology.
    ("93005", "CPT", "Electrocardiogram, tracing only", CARDIOLOGY, 5_500),
    ("93010", "CPT", "Electrocardiogram, interpretation and report only", CARDIOLOGY, 3_200),
    ("93308", "CPT", "Echocardiogram, transthoracic, follow-up or limited", CARDIOLOGY, 98_000),
    ("93312", "CPT", "Echocardiogram, transesophageal", CARDIOLOGY, 215_000),
    ("93350", "CPT", "Stress echocardiogram", CARDIOLOGY, 185_000),
    ("93224", "CPT", "External ECG recording up to 48 hours (Holter)", CARDIOLOGY, 39_500),
    ("93880", "CPT", "Duplex scan of extracranial arteries, bilateral", CARDIOLOGY, 72_000),
    ("78452", "CPT", "Myocardial perfusion imaging, SPECT, multiple studies", CARDIOLOGY, 310_000),
    ("93458", "CPT", "Left heart catheterization with coronary angiography", CARDIOLOGY, 865_000),
    ("92928", "CPT", "Percutaneous coronary stent placement, single vessel", CARDIOLOGY, 1_420_000),
    ("33208", "CPT", "Insertion of dual-chamber permanent pacemaker", CARDIOLOGY, 1_860_000),
    # Surgery and orthopedics.
    ("27130", "CPT", "Total hip arthroplasty", SURGERY, 3_850_000),
    ("27447", "CPT", "Total knee arthroplasty", SURGERY, 3_620_000),
    ("27236", "CPT", "Open treatment of femoral neck fracture, prosthetic replacement", SURGERY, 2_950_000),
    ("27245", "CPT", "Intertrochanteric femoral fracture, intramedullary implant", SURGERY, 2_710_000),
    ("29881", "CPT", "Knee arthroscopy with meniscectomy", SURGERY, 985_000),
    ("25607", "CPT", "Open treatment of distal radial fracture, plate fixation", SURGERY, 1_120_000),
    ("25600", "CPT", "Closed treatment of distal radial fracture", SURGERY, 68_000),
    ("29105", "CPT", "Application of long arm splint", SURGERY, 24_500),
    ("29515", "CPT", "Application of short leg splint", SURGERY, 22_500),
    ("44970", "CPT", "Laparoscopic appendectomy", SURGERY, 1_380_000),
    ("47562", "CPT", "Laparoscopic cholecystectomy", SURGERY, 1_540_000),
    ("49505", "CPT", "Repair of initial inguinal hernia, age 5 years or older", SURGERY, 980_000),
    ("43239", "CPT", "Upper GI endoscopy with biopsy", SURGERY, 265_000),
    ("45378", "CPT", "Colonoscopy, diagnostic", SURGERY, 295_000),
    ("45380", "CPT", "Colonoscopy with biopsy", SURGERY, 345_000),
    ("36561", "CPT", "Insertion of tunneled central venous access device with port", SURGERY, 612_000),
    # Rehabilitation and respiratory therapy.
    ("97110", "CPT", "Therapeutic exercise, 15 min", THERAPY, 6_200),
    ("97112", "CPT", "Neuromuscular re-education, 15 min", THERAPY, 6_800),
    ("97140", "CPT", "Manual therapy techniques, 15 min", THERAPY, 5_900),
    ("97161", "CPT", "Physical therapy evaluation, low complexity", THERAPY, 19_500),
    ("97162", "CPT", "Physical therapy evaluation, moderate complexity", THERAPY, 23_500),
    ("97163", "CPT", "Physical therapy evaluation, high complexity", THERAPY, 28_000),
    ("97530", "CPT", "Therapeutic activities, 15 min", THERAPY, 7_100),
    ("97535", "CPT", "Self-care and home management training, 15 min", THERAPY, 6_900),
    ("94010", "CPT", "Spirometry", THERAPY, 11_500),
    ("94060", "CPT", "Spirometry before and after bronchodilator", THERAPY, 19_500),
    ("94660", "CPT", "CPAP ventilation initiation and management", THERAPY, 21_000),
    ("94760", "CPT", "Pulse oximetry, single determination", THERAPY, 1_800),
    ("94761", "CPT", "Pulse oximetry, multiple determinations", THERAPY, 3_200),
    # Oncology and infusion.
    ("96401", "CPT", "Chemotherapy, subcutaneous or intramuscular, non-hormonal", ONCOLOGY, 24_500),
    ("96409", "CPT", "Chemotherapy, IV push, single or initial drug", ONCOLOGY, 38_500),
    ("96417", "CPT", "Chemotherapy IV infusion, each additional sequential drug", ONCOLOGY, 28_000),
    ("96523", "CPT", "Irrigation of implanted venous access device", ONCOLOGY, 7_500),
    ("36591", "CPT", "Collection of blood specimen from implanted venous access device", ONCOLOGY, 5_200),
    ("J9060", "HCPCS", "Cisplatin, powder or solution, 10 mg", ONCOLOGY, 2_400),
    ("J9171", "HCPCS", "Docetaxel, 1 mg", ONCOLOGY, 950),
    ("J9267", "HCPCS", "Paclitaxel, 1 mg", ONCOLOGY, 120),
    ("J9190", "HCPCS", "Fluorouracil, 500 mg", ONCOLOGY, 1_800),
    ("J9305", "HCPCS", "Pemetrexed, not otherwise specified, 10 mg", ONCOLOGY, 9_500),
    ("J9271", "HCPCS", "Pembrolizumab, 1 mg", ONCOLOGY, 15_500),
    ("Q5118", "HCPCS", "Bevacizumab-bvzr, biosimilar, 10 mg", ONCOLOGY, 16_500),
    ("J2506", "HCPCS", "Pegfilgrastim, excludes biosimilar, 0.5 mg", ONCOLOGY, 98_000),
    ("J1453", "HCPCS", "Fosaprepitant, 1 mg", ONCOLOGY, 650),
    ("J2469", "HCPCS", "Palonosetron HCl, 25 mcg", ONCOLOGY, 2_300),
    # Obstetrics and newborn.
    ("59409", "CPT", "Vaginal delivery only", OBSTETRICS, 285_000),
    ("59510", "CPT", "Routine obstetric care, cesarean delivery", OBSTETRICS, 610_000),
    ("59514", "CPT", "Cesarean delivery only", OBSTETRICS, 395_000),
    ("76805", "CPT", "Ultrasound, pregnant uterus, after first trimester, complete", OBSTETRICS, 46_500),
    ("76817", "CPT", "Ultrasound, pregnant uterus, transvaginal", OBSTETRICS, 32_000),
    ("01967", "CPT", "Neuraxial labor analgesia, planned vaginal delivery", OBSTETRICS, 215_000),
    ("J2590", "HCPCS", "Oxytocin, up to 10 units", OBSTETRICS, 1_900),
    ("J2790", "HCPCS", "Rho(D) immune globulin, full dose, 300 mcg", OBSTETRICS, 42_000),
    # Pharmacy (drugs administered in hospital).
    ("J0131", "HCPCS", "Acetaminophen injection, 10 mg", PHARMACY, 95),
    ("J1170", "HCPCS", "Hydromorphone, up to 4 mg", PHARMACY, 1_450),
    ("J2270", "HCPCS", "Morphine sulfate, up to 10 mg", PHARMACY, 1_250),
    ("J3010", "HCPCS", "Fentanyl citrate, 0.1 mg", PHARMACY, 1_100),
    ("J1644", "HCPCS", "Heparin sodium, per 1,000 units", PHARMACY, 450),
    ("J1650", "HCPCS", "Enoxaparin sodium, 10 mg", PHARMACY, 1_350),
    ("J1885", "HCPCS", "Ketorolac tromethamine, per 15 mg", PHARMACY, 850),
    ("J0690", "HCPCS", "Cefazolin sodium, 500 mg", PHARMACY, 1_050),
    ("J3370", "HCPCS", "Vancomycin HCl, 500 mg", PHARMACY, 2_450),
    ("J2543", "HCPCS", "Piperacillin sodium/tazobactam sodium, 1 g/0.125 g", PHARMACY, 2_900),
    ("J2185", "HCPCS", "Meropenem, 100 mg", PHARMACY, 750),
    ("J1200", "HCPCS", "Diphenhydramine HCl, up to 50 mg", PHARMACY, 1_150),
    ("J2250", "HCPCS", "Midazolam HCl, per 1 mg", PHARMACY, 650),
    ("J2704", "HCPCS", "Propofol, 10 mg", PHARMACY, 450),
    ("J1815", "HCPCS", "Insulin, per 5 units", PHARMACY, 500),
    ("J1940", "HCPCS", "Furosemide, up to 20 mg", PHARMACY, 950),
    ("J0171", "HCPCS", "Adrenalin, epinephrine, 0.1 mg", PHARMACY, 1_250),
    ("J0461", "HCPCS", "Atropine sulfate, 0.01 mg", PHARMACY, 120),
    ("J2930", "HCPCS", "Methylprednisolone sodium succinate, up to 125 mg", PHARMACY, 3_400),
    ("J0780", "HCPCS", "Prochlorperazine, up to 10 mg", PHARMACY, 1_650),
    ("J2765", "HCPCS", "Metoclopramide HCl, up to 10 mg", PHARMACY, 850),
    ("J2310", "HCPCS", "Naloxone HCl, per 1 mg", PHARMACY, 3_900),
    ("J3475", "HCPCS", "Magnesium sulfate, per 500 mg", PHARMACY, 450),
    ("J7040", "HCPCS", "Normal saline solution infusion, sterile, 500 ml", PHARMACY, 3_300),
    ("J7050", "HCPCS", "Normal saline solution infusion, 250 cc", PHARMACY, 2_600),
    ("J7120", "HCPCS", "Ringer's lactate infusion, up to 1000 cc", PHARMACY, 4_400),
    ("J7070", "HCPCS", "Infusion, D5W, 1000 cc", PHARMACY, 4_100),
    ("J2795", "HCPCS", "Ropivacaine HCl, 1 mg", PHARMACY, 60),
    ("J2001", "HCPCS", "Lidocaine HCl for intravenous infusion, 10 mg", PHARMACY, 350),
    ("J7613", "HCPCS", "Albuterol, inhalation solution, unit dose, 1 mg", PHARMACY, 450),
    ("J7620", "HCPCS", "Albuterol up to 2.5 mg and ipratropium 0.5 mg, unit dose", PHARMACY, 1_250),
    ("J2997", "HCPCS", "Alteplase recombinant, 1 mg", PHARMACY, 21_500),
    ("J0295", "HCPCS", "Ampicillin sodium/sulbactam sodium, per 1.5 g", PHARMACY, 2_650),
    # Supplies and implants billed by HCPCS device code.
    ("C1776", "HCPCS", "Joint device (implantable)", SUPPLIES, 1_485_000),
    ("C1713", "HCPCS", "Anchor/screw for opposing bone-to-bone or soft tissue-to-bone", SUPPLIES, 125_000),
    ("C1785", "HCPCS", "Pacemaker, dual chamber, rate-responsive (implantable)", SUPPLIES, 2_180_000),
    ("C1898", "HCPCS", "Lead, pacemaker, other than transvenous VDD single pass", SUPPLIES, 385_000),
    ("C1722", "HCPCS", "Cardioverter-defibrillator, single chamber (implantable)", SUPPLIES, 6_250_000),
    ("C1874", "HCPCS", "Stent, coated/covered, with delivery system", SUPPLIES, 485_000),
    ("C1764", "HCPCS", "Event recorder, cardiac (implantable)", SUPPLIES, 1_650_000),
    ("C1788", "HCPCS", "Port, indwelling (implantable)", SUPPLIES, 195_000),
    ("C1781", "HCPCS", "Mesh (implantable)", SUPPLIES, 142_000),
    ("C1880", "HCPCS", "Vena cava filter", SUPPLIES, 520_000),
    ("C1758", "HCPCS", "Catheter, ureteral", SUPPLIES, 68_000),
    ("C1725", "HCPCS", "Catheter, transluminal angioplasty, non-laser", SUPPLIES, 215_000),
    ("C1769", "HCPCS", "Guide wire", SUPPLIES, 42_000),
    ("C1894", "HCPCS", "Introducer/sheath, other than guiding, non-laser", SUPPLIES, 31_000),
    ("C1751", "HCPCS", "Catheter, infusion, inserted peripherally, centrally or midline", SUPPLIES, 148_000),
    ("C1889", "HCPCS", "Implantable/insertable device, not otherwise classified", SUPPLIES, 250_000),
)

# --- Item master -----------------------------------------------------------------------------------------

# Supplies: (description, unit, unit cost, reorder point, par level, supplier, lead days, charge price or 0).
# Codes are SUP1001 upwards in table order; SUP1001-SUP1004 are what the synthetic day charges. A supply with
# a charge price is also a SUPPLY line of the charge master (revenue 4900).
SUPPLY_ITEMS: tuple[tuple[str, str, int, int, int, str, int, int], ...] = (
    ("IV start kit", "EA", 450, 200, 600, "Medline", 3, 2_750),
    ("Cast & splint supplies", "EA", 2_200, 40, 120, "Owens & Minor", 4, 8_900),
    ("Foley catheter tray", "EA", 1_150, 60, 180, "BD", 5, 6_800),
    ("Wound dressing, sterile, large", "EA", 310, 150, 500, "Medline", 3, 1_275),
    ("IV catheter, safety, 18G x 1.16 in", "EA", 170, 300, 1_000, "BD", 5, 0),
    ("IV catheter, safety, 20G x 1 in", "EA", 165, 400, 1_200, "BD", 5, 0),
    ("IV catheter, safety, 22G x 1 in", "EA", 165, 300, 900, "BD", 5, 0),
    ("IV administration set, primary, 15 drop/mL", "EA", 390, 250, 800, "Baxter", 7, 0),
    ("IV administration set, secondary piggyback", "EA", 240, 200, 600, "Baxter", 7, 0),
    ("IV extension set with needleless connector", "EA", 180, 300, 900, "BD", 5, 0),
    ("Infusion pump set, large volume", "EA", 890, 200, 600, "Baxter", 7, 0),
    ("Blood administration set with 170-260 micron filter", "EA", 420, 60, 180, "Baxter", 7, 0),
    ("Saline flush syringe, prefilled, 10 mL", "EA", 32, 1_000, 3_000, "BD", 5, 0),
    ("Syringe, Luer-Lok, 3 mL with 23G needle", "EA", 14, 1_000, 3_000, "BD", 5, 0),
    ("Syringe, Luer-Lok, 10 mL", "EA", 12, 800, 2_400, "BD", 5, 0),
    ("Syringe, catheter tip, 60 mL", "EA", 65, 100, 300, "Cardinal Health", 4, 0),
    ("Hypodermic needle, 18G x 1.5 in", "EA", 6, 1_000, 3_000, "BD", 5, 0),
    ("Safety needle, 25G x 5/8 in", "EA", 11, 800, 2_400, "BD", 5, 0),
    ("Blood collection tube, EDTA lavender top, 4 mL", "EA", 12, 1_000, 3_000, "BD", 5, 0),
    ("Blood collection tube, serum separator gold top, 5 mL", "EA", 14, 1_000, 3_000, "BD", 5, 0),
    ("Blood collection tube, sodium citrate light blue top, 2.7 mL", "EA", 15, 600, 1_800, "BD", 5, 0),
    ("Blood culture bottle, aerobic", "EA", 620, 100, 300, "BD", 7, 0),
    ("Blood culture bottle, anaerobic", "EA", 620, 100, 300, "BD", 7, 0),
    ("Blood collection set, butterfly, 23G", "EA", 95, 400, 1_200, "BD", 5, 0),
    ("Tourniquet, latex-free, single use", "EA", 4, 1_000, 3_000, "Medline", 3, 0),
    ("Exam gloves, nitrile, small, box of 100", "BX", 690, 100, 300, "Medline", 3, 0),
    ("Exam gloves, nitrile, medium, box of 100", "BX", 690, 150, 500, "Medline", 3, 0),
    ("Exam gloves, nitrile, large, box of 100", "BX", 690, 150, 500, "Medline", 3, 0),
    ("Surgical gloves, sterile, size 7", "PR", 120, 200, 600, "Cardinal Health", 4, 0),
    ("Surgical gloves, sterile, size 7.5", "PR", 120, 200, 600, "Cardinal Health", 4, 0),
    ("Isolation gown, AAMI level 2", "EA", 85, 500, 1_500, "Owens & Minor", 4, 0),
    ("Surgical gown, sterile, large", "EA", 410, 150, 450, "Owens & Minor", 4, 0),
    ("N95 respirator", "EA", 95, 500, 2_000, "Owens & Minor", 5, 0),
    ("Procedure mask with ear loops, box of 50", "BX", 450, 100, 400, "Medline", 3, 0),
    ("Face shield, full length", "EA", 65, 200, 600, "Medline", 3, 0),
    ("Alcohol prep pad, box of 200", "BX", 290, 50, 150, "Medline", 3, 0),
    ("Chlorhexidine 2% / alcohol skin prep applicator, 3 mL", "EA", 145, 300, 900, "BD", 5, 0),
    ("Povidone-iodine swabsticks, pack of 3", "PK", 38, 200, 600, "Medline", 3, 0),
    ("Chlorhexidine 2% bathing cloths, pack of 2", "PK", 190, 200, 600, "Stryker", 6, 0),
    ("Gauze sponge, sterile, 4 x 4 in, pack of 2", "PK", 9, 1_000, 3_000, "Medline", 3, 0),
    ("Gauze roll, sterile, 4.5 in", "EA", 45, 300, 900, "Medline", 3, 0),
    ("Abdominal pad, sterile, 8 x 10 in", "EA", 28, 300, 900, "Cardinal Health", 4, 0),
    ("Transparent film dressing, 4 x 4.75 in", "EA", 62, 400, 1_200, "Medline", 3, 350),
    ("Foam dressing, bordered, 6 x 6 in", "EA", 520, 100, 300, "Medline", 3, 2_100),
    ("Hydrocolloid dressing, 4 x 4 in", "EA", 310, 80, 240, "Cardinal Health", 4, 1_300),
    ("Silver alginate dressing, 4 x 5 in", "EA", 890, 40, 120, "Cardinal Health", 4, 3_400),
    ("Negative pressure wound therapy kit, medium", "KT", 5_200, 10, 30, "Cardinal Health", 5, 18_500),
    ("Medical tape, silk, 1 in", "RL", 55, 200, 600, "Medline", 3, 0),
    ("Elastic bandage, 4 in", "EA", 95, 150, 450, "Medline", 3, 600),
    ("Cast padding, 4 in", "RL", 75, 100, 300, "Owens & Minor", 4, 0),
    ("Fiberglass casting tape, 3 in", "RL", 520, 40, 120, "Owens & Minor", 4, 2_400),
    ("Fiberglass splint roll, 4 x 30 in", "EA", 910, 30, 90, "Owens & Minor", 4, 3_800),
    ("Arm sling, adult, medium", "EA", 340, 40, 120, "Medline", 3, 1_900),
    ("Knee immobilizer, universal, 20 in", "EA", 1_450, 20, 60, "Medline", 3, 6_500),
    ("Cervical collar, adjustable, adult", "EA", 1_650, 15, 45, "Owens & Minor", 4, 7_200),
    ("Crutches, aluminum, adult", "PR", 1_600, 20, 60, "Medline", 3, 8_500),
    ("Walker, folding, adult", "EA", 2_800, 10, 30, "Medline", 3, 12_000),
    ("Suture, nylon 4-0, reverse cutting needle", "EA", 210, 100, 300, "Medtronic", 6, 0),
    ("Suture, polyglactin 3-0, absorbable", "EA", 380, 100, 300, "Medtronic", 6, 0),
    ("Skin stapler, 35 wide staples", "EA", 1_150, 30, 90, "Medtronic", 6, 5_400),
    ("Topical skin adhesive, 0.5 mL", "EA", 1_450, 40, 120, "Medtronic", 6, 6_200),
    ("Laceration repair tray", "EA", 780, 40, 120, "Medline", 3, 0),
    ("Suture removal kit", "EA", 190, 60, 180, "Medline", 3, 0),
    ("Foley catheter, silicone, 16 Fr, 10 mL balloon", "EA", 420, 80, 240, "BD", 5, 0),
    ("Urine drainage bag, 2,000 mL", "EA", 230, 100, 300, "BD", 5, 0),
    ("Intermittent urinary catheter, 14 Fr", "EA", 85, 100, 300, "Medline", 3, 0),
    ("Specimen container, sterile, 4 oz", "EA", 18, 500, 1_500, "Cardinal Health", 4, 0),
    ("Nasogastric tube, 16 Fr", "EA", 240, 40, 120, "Cardinal Health", 4, 1_800),
    ("Enteral feeding pump set, 1,000 mL", "EA", 780, 60, 180, "Cardinal Health", 4, 0),
    ("Suction canister, 1,500 mL", "EA", 310, 150, 450, "Cardinal Health", 4, 0),
    ("Yankauer suction tip", "EA", 95, 200, 600, "Medline", 3, 0),
    ("Suction catheter kit, 14 Fr", "EA", 120, 150, 450, "Medline", 3, 0),
    ("Oxygen nasal cannula, adult", "EA", 65, 300, 900, "Medline", 3, 0),
    ("Non-rebreather oxygen mask, adult", "EA", 145, 150, 450, "Medline", 3, 0),
    ("Nebulizer kit, hand-held", "EA", 175, 200, 600, "Cardinal Health", 4, 0),
    ("Incentive spirometer, 4,000 mL", "EA", 520, 60, 180, "Medline", 3, 2_500),
    ("Endotracheal tube, cuffed, 7.5 mm", "EA", 380, 30, 90, "Medtronic", 6, 2_600),
    ("Laryngoscope blade, disposable, Macintosh 3", "EA", 620, 20, 60, "Medline", 3, 0),
    ("Resuscitation bag-valve-mask, adult", "EA", 1_250, 20, 60, "Medline", 3, 5_200),
    ("Tracheostomy care kit", "EA", 280, 30, 90, "Medline", 3, 0),
    ("ECG electrode, foam, adult", "EA", 12, 2_000, 6_000, "Cardinal Health", 4, 0),
    ("Defibrillation electrode pads, adult", "PR", 3_200, 20, 60, "Stryker", 6, 14_500),
    ("Pulse oximeter sensor, adult, single patient", "EA", 950, 60, 180, "Medtronic", 6, 3_800),
    ("Blood pressure cuff, single patient, adult", "EA", 290, 100, 300, "Cardinal Health", 4, 0),
    ("Thermometer probe covers, box of 200", "BX", 380, 40, 120, "Cardinal Health", 4, 0),
    ("Sequential compression sleeves, knee, medium", "PR", 2_100, 40, 120, "Cardinal Health", 4, 9_800),
    ("Underpad, disposable, 23 x 36 in", "EA", 28, 500, 1_500, "Medline", 3, 0),
    ("Adult brief, large", "EA", 42, 400, 1_200, "Medline", 3, 0),
    ("Emesis bag, graduated", "EA", 22, 300, 900, "Medline", 3, 0),
    ("Sharps container, 2 gallon", "EA", 480, 60, 180, "BD", 5, 0),
    ("Specimen bag, biohazard, zip closure", "EA", 6, 2_000, 6_000, "Medline", 3, 0),
    ("Ostomy pouch, drainable, two-piece", "EA", 420, 40, 120, "Medline", 3, 1_700),
    ("Glucose meter test strips, box of 50", "BX", 1_850, 40, 120, "Cardinal Health", 4, 0),
    ("Safety lancet, box of 100", "BX", 1_100, 30, 90, "BD", 5, 0),
    ("Instant cold pack, 6 x 9 in", "EA", 65, 100, 300, "Medline", 3, 0),
    ("Ultrasound gel, 250 mL bottle", "EA", 180, 100, 300, "Medline", 3, 0),
    ("Germicidal disposable wipes, canister of 160", "EA", 780, 100, 300, "Medline", 3, 0),
    ("Umbilical cord clamp", "EA", 35, 100, 300, "Medline", 3, 0),
    ("Fetal scalp electrode", "EA", 1_250, 20, 60, "Cardinal Health", 4, 4_800),
    ("Intrauterine pressure catheter", "EA", 4_200, 15, 45, "Cardinal Health", 4, 15_500),
    ("Epidural anesthesia tray, 17G", "KT", 2_650, 20, 60, "BD", 5, 9_800),
    ("Spinal needle, 22G x 3.5 in", "EA", 480, 40, 120, "BD", 5, 0),
    ("Lumbar puncture tray, adult", "KT", 2_300, 10, 30, "BD", 5, 9_500),
    ("Thoracentesis kit with catheter", "KT", 3_200, 8, 24, "Cardinal Health", 5, 12_500),
    ("Paracentesis kit", "KT", 3_100, 8, 24, "Cardinal Health", 5, 12_000),
    ("Bone marrow biopsy needle, 11G", "EA", 3_900, 6, 18, "BD", 7, 15_500),
    ("Biopsy punch, 4 mm", "EA", 150, 40, 120, "Medline", 3, 0),
    ("Central venous catheter kit, triple lumen, 7 Fr", "KT", 4_200, 20, 60, "BD", 5, 18_500),
    ("PICC kit, power-injectable, 5 Fr dual lumen", "KT", 14_500, 10, 30, "BD", 7, 52_000),
    ("Arterial line kit, 20G", "KT", 3_100, 15, 45, "BD", 5, 12_500),
    ("Pressure transducer kit, single", "KT", 2_400, 20, 60, "Baxter", 7, 9_500),
    ("Chest drainage system, dry suction", "EA", 7_200, 6, 18, "Cardinal Health", 5, 24_000),
    ("Custom procedure pack, general surgery", "EA", 8_900, 10, 30, "Owens & Minor", 10, 24_500),
    ("Custom procedure pack, total joint", "EA", 14_200, 10, 30, "Owens & Minor", 10, 39_500),
    ("Custom procedure pack, cesarean section", "EA", 9_800, 10, 30, "Owens & Minor", 10, 28_000),
    ("Custom procedure pack, cardiac catheterization", "EA", 11_500, 10, 30, "Cardinal Health", 10, 32_000),
    ("Laparoscopic trocar, bladed, 12 mm", "EA", 6_200, 20, 60, "Medtronic", 6, 21_000),
    ("Electrosurgical pencil with holster", "EA", 480, 40, 120, "Medtronic", 6, 0),
    ("Electrosurgical patient return electrode, adult", "EA", 560, 40, 120, "Medtronic", 6, 0),
    ("Surgical blade, No. 10, box of 50", "BX", 1_450, 10, 30, "Cardinal Health", 4, 0),
    ("Surgical blade, No. 15, box of 50", "BX", 1_450, 10, 30, "Cardinal Health", 4, 0),
    ("Sterile OR towels, blue, pack of 4", "PK", 180, 100, 300, "Owens & Minor", 4, 0),
    ("Laparotomy sponge, 18 x 18 in, pack of 5", "PK", 210, 100, 300, "Medline", 3, 0),
    ("Absorbable gelatin hemostatic sponge, 100", "EA", 1_900, 20, 60, "Pfizer", 7, 7_800),
    ("Bone cement, radiopaque, 40 g", "EA", 8_900, 10, 30, "Stryker", 6, 28_500),
    ("Guidewire, 0.035 in x 150 cm", "EA", 3_800, 15, 45, "Medtronic", 6, 14_000),
    ("Introducer sheath, 6 Fr", "EA", 2_900, 20, 60, "Medtronic", 6, 11_500),
    ("Coronary diagnostic catheter, 6 Fr JL4", "EA", 3_400, 20, 60, "Medtronic", 6, 12_800),
    ("PTCA balloon catheter, 3.0 x 15 mm", "EA", 21_000, 6, 18, "Medtronic", 6, 68_000),
    ("Contrast power injector syringe kit, 200 mL", "KT", 1_450, 60, 180, "Bayer", 7, 0),
)
_SUPPLY_FIRST_NUMBER = 1001

# Drugs by NDC (11-digit 5-4-2): (ndc, description, stocking unit, unit cost, reorder point, par level,
# supplier, lead days). Units match what the EHR sends in RXA-7 (mL, TAB, VIAL...). The first six are what
# the synthetic day administers.
DRUG_ITEMS: tuple[tuple[str, str, str, int, int, int, str, int], ...] = (
    ("00409-4888-01", "Heparin sodium 5,000 units/mL", "mL", 120, 100, 300, "Pfizer", 5),
    ("00338-0049-04", "Sodium chloride 0.9% 1,000 mL", "mL", 1, 200_000, 600_000, "Baxter", 7),
    ("00054-4297-25", "Ondansetron 4 mg tablet", "TAB", 12, 500, 1_500, "Hikma", 5),
    ("63323-0262-01", "Ceftriaxone 1 g vial", "VIAL", 95, 200, 600, "Fresenius Kabi", 5),
    ("00641-6000-25", "Morphine sulfate 2 mg/mL", "mL", 180, 50, 150, "Hikma", 5),
    ("00904-6723-61", "Acetaminophen 325 mg tablet", "TAB", 2, 2_000, 6_000, "Cardinal Health", 3),
    ("00409-2720-02", "Heparin sodium 1,000 units/mL, 10 mL vial", "VIAL", 640, 60, 180, "Pfizer", 5),
    ("00409-1152-35", "Heparin lock flush 100 units/mL, 5 mL syringe", "SYR", 95, 300, 900, "Pfizer", 5),
    ("00338-0433-03", "Heparin 25,000 units in 250 mL D5W premix", "BAG", 1_450, 30, 90, "Baxter", 7),
    ("00781-3247-64", "Enoxaparin 40 mg/0.4 mL prefilled syringe", "SYR", 380, 200, 600, "McKesson", 2),
    ("00338-0049-03", "Sodium chloride 0.9% 500 mL", "BAG", 165, 300, 900, "Baxter", 7),
    ("00338-0049-48", "Sodium chloride 0.9% 100 mL", "BAG", 140, 600, 1_800, "Baxter", 7),
    ("00338-0117-04", "Lactated Ringer's 1,000 mL", "BAG", 210, 300, 900, "Baxter", 7),
    ("00338-0017-04", "Dextrose 5% in water 1,000 mL", "BAG", 205, 100, 300, "Baxter", 7),
    ("00338-0709-48", "Potassium chloride 20 mEq in 100 mL", "BAG", 520, 60, 180, "Baxter", 7),
    ("00409-4888-12", "Sterile water for injection, 10 mL vial", "VIAL", 55, 300, 900, "Pfizer", 5),
    ("00409-4902-34", "Dextrose 50% 25 g/50 mL syringe", "SYR", 890, 40, 120, "Pfizer", 5),
    ("55150-0125-02", "Ondansetron 2 mg/mL, 2 mL vial", "VIAL", 38, 300, 900, "McKesson", 2),
    ("68180-0516-11", "Ondansetron 4 mg orally disintegrating tablet", "TAB", 18, 300, 900, "McKesson", 2),
    ("63323-0263-10", "Ceftriaxone 2 g vial", "VIAL", 165, 100, 300, "Fresenius Kabi", 5),
    ("63323-0237-10", "Cefazolin 1 g vial", "VIAL", 120, 300, 900, "Fresenius Kabi", 5),
    ("63323-0238-10", "Cefazolin 2 g vial", "VIAL", 230, 150, 450, "Fresenius Kabi", 5),
    ("63323-0314-61", "Vancomycin 1 g vial", "VIAL", 420, 150, 450, "Fresenius Kabi", 5),
    ("25021-0172-10", "Piperacillin-tazobactam 3.375 g vial", "VIAL", 610, 150, 450, "Sagent", 6),
    ("25021-0149-10", "Ampicillin-sulbactam 3 g vial", "VIAL", 540, 60, 180, "Sagent", 6),
    ("63323-0508-20", "Meropenem 1 g vial", "VIAL", 780, 60, 180, "Fresenius Kabi", 5),
    ("55150-0174-10", "Azithromycin 500 mg vial", "VIAL", 690, 40, 120, "McKesson", 2),
    ("00409-4815-31", "Levofloxacin 750 mg/150 mL premix", "BAG", 950, 30, 90, "Pfizer", 5),
    ("00338-1055-48", "Metronidazole 500 mg/100 mL", "BAG", 480, 40, 120, "Baxter", 7),
    ("00093-2275-01", "Amoxicillin-clavulanate 875/125 mg tablet", "TAB", 45, 200, 600, "McKesson", 2),
    ("00093-3147-01", "Cephalexin 500 mg capsule", "CAP", 9, 300, 900, "McKesson", 2),
    ("00641-6127-25", "Morphine sulfate 4 mg/mL, 1 mL syringe", "SYR", 240, 100, 300, "Hikma", 5),
    ("00409-1283-31", "Hydromorphone 1 mg/mL, 1 mL syringe", "SYR", 310, 100, 300, "Pfizer", 5),
    ("00409-9094-22", "Fentanyl citrate 50 mcg/mL, 2 mL vial", "VIAL", 145, 100, 300, "Pfizer", 5),
    ("00406-0552-01", "Oxycodone 5 mg tablet", "TAB", 14, 300, 900, "McKesson", 2),
    ("00406-0123-01", "Hydrocodone-acetaminophen 5/325 mg tablet", "TAB", 11, 300, 900, "McKesson", 2),
    ("65162-0627-10", "Tramadol 50 mg tablet", "TAB", 5, 300, 900, "McKesson", 2),
    ("00409-3795-01", "Ketorolac 30 mg/mL, 1 mL vial", "VIAL", 85, 200, 600, "Pfizer", 5),
    ("00904-5853-61", "Ibuprofen 400 mg tablet", "TAB", 3, 1_000, 3_000, "Cardinal Health", 3),
    ("00904-6730-61", "Acetaminophen 500 mg tablet", "TAB", 2, 1_000, 3_000, "Cardinal Health", 3),
    ("63323-0398-10", "Acetaminophen 1,000 mg/100 mL injection", "VIAL", 720, 60, 180, "Fresenius Kabi", 5),
    ("00904-7102-12", "Acetaminophen 650 mg suppository", "EA", 42, 100, 300, "Cardinal Health", 3),
    ("00409-1215-01", "Naloxone 0.4 mg/mL, 1 mL vial", "VIAL", 1_450, 60, 180, "Pfizer", 5),
    ("00641-6057-10", "Midazolam 1 mg/mL, 2 mL vial", "VIAL", 95, 100, 300, "Hikma", 5),
    ("00641-6044-25", "Lorazepam 2 mg/mL, 1 mL vial", "VIAL", 210, 100, 300, "Hikma", 5),
    ("63323-0269-29", "Propofol 10 mg/mL, 20 mL vial", "VIAL", 390, 200, 600, "Fresenius Kabi", 5),
    ("00409-1638-10", "Dexmedetomidine 400 mcg/100 mL", "BAG", 2_450, 20, 60, "Pfizer", 5),
    ("00409-9558-05", "Rocuronium 10 mg/mL, 5 mL vial", "VIAL", 340, 60, 180, "Pfizer", 5),
    ("00409-6629-02", "Succinylcholine 20 mg/mL, 10 mL vial", "VIAL", 420, 40, 120, "Pfizer", 5),
    ("55150-0221-20", "Etomidate 2 mg/mL, 20 mL vial", "VIAL", 510, 30, 90, "McKesson", 2),
    ("00409-2053-10", "Ketamine 50 mg/mL, 10 mL vial", "VIAL", 860, 30, 90, "Pfizer", 5),
    ("00409-4276-02", "Lidocaine 1%, 20 mL vial", "VIAL", 140, 200, 600, "Pfizer", 5),
    ("00409-3182-01", "Lidocaine 2%/epinephrine 1:100,000, 20 mL vial", "VIAL", 320, 100, 300, "Pfizer", 5),
    ("00409-1159-02", "Bupivacaine 0.25%, 30 mL vial", "VIAL", 185, 100, 300, "Pfizer", 5),
    ("63323-0286-31", "Ropivacaine 0.5%, 30 mL vial", "VIAL", 450, 60, 180, "Fresenius Kabi", 5),
    ("00409-4921-34", "Epinephrine 1 mg/10 mL syringe", "SYR", 1_250, 60, 180, "Pfizer", 5),
    ("00409-4011-01", "Epinephrine 1 mg/mL, 1 mL vial", "VIAL", 1_850, 30, 90, "Pfizer", 5),
    ("00409-1443-04", "Norepinephrine 4 mg/4 mL vial", "VIAL", 690, 60, 180, "Pfizer", 5),
    ("63323-0301-01", "Vasopressin 20 units/mL, 1 mL vial", "VIAL", 3_900, 20, 60, "Fresenius Kabi", 5),
    ("55150-0180-03", "Amiodarone 150 mg/3 mL vial", "VIAL", 240, 60, 180, "McKesson", 2),
    ("25021-0301-02", "Adenosine 6 mg/2 mL vial", "VIAL", 310, 40, 120, "Sagent", 6),
    ("00409-4910-34", "Atropine 1 mg/10 mL syringe", "SYR", 1_150, 40, 120, "Pfizer", 5),
    ("55150-0191-05", "Diltiazem 25 mg/5 mL vial", "VIAL", 290, 40, 120, "McKesson", 2),
    ("00409-1778-05", "Metoprolol tartrate 5 mg/5 mL vial", "VIAL", 120, 100, 300, "Pfizer", 5),
    ("00378-0018-01", "Metoprolol tartrate 25 mg tablet", "TAB", 3, 500, 1_500, "McKesson", 2),
    ("68180-0129-01", "Atorvastatin 40 mg tablet", "TAB", 6, 500, 1_500, "McKesson", 2),
    ("00904-6794-60", "Aspirin 81 mg chewable tablet", "TAB", 1, 1_000, 3_000, "Cardinal Health", 3),
    ("68180-0717-01", "Clopidogrel 75 mg tablet", "TAB", 8, 300, 900, "McKesson", 2),
    ("59762-3304-01", "Nitroglycerin 0.4 mg SL tablet, bottle of 25", "EA", 1_650, 20, 60, "McKesson", 2),
    ("00409-6102-04", "Furosemide 10 mg/mL, 4 mL vial", "VIAL", 145, 150, 450, "Pfizer", 5),
    ("00054-3297-25", "Furosemide 40 mg tablet", "TAB", 3, 300, 900, "Hikma", 5),
    ("68180-0514-01", "Lisinopril 10 mg tablet", "TAB", 2, 500, 1_500, "McKesson", 2),
    ("68180-0720-01", "Amlodipine 5 mg tablet", "TAB", 2, 500, 1_500, "McKesson", 2),
    ("00002-8215-01", "Insulin regular 100 units/mL, 10 mL", "VIAL", 4_450, 30, 90, "Cardinal Health", 3),
    ("00088-5020-05", "Insulin glargine 100 units/mL, 3 mL pen", "PEN", 6_200, 20, 60, "Cardinal Health", 3),
    ("00002-7510-01", "Insulin lispro 100 units/mL, 10 mL vial", "VIAL", 8_900, 20, 60, "Cardinal Health", 3),
    ("68180-0336-01", "Metformin 500 mg tablet", "TAB", 2, 500, 1_500, "McKesson", 2),
    ("55150-0202-10", "Pantoprazole 40 mg vial", "VIAL", 350, 100, 300, "McKesson", 2),
    ("68180-0608-01", "Pantoprazole 40 mg delayed-release tablet", "TAB", 5, 500, 1_500, "McKesson", 2),
    ("63323-0739-12", "Famotidine 20 mg/2 mL vial", "VIAL", 110, 100, 300, "Fresenius Kabi", 5),
    ("63323-0165-01", "Dexamethasone 4 mg/mL, 1 mL vial", "VIAL", 65, 200, 600, "Fresenius Kabi", 5),
    ("00009-0047-22", "Methylprednisolone sodium succinate 125 mg vial", "VIAL", 690, 60, 180, "Pfizer", 5),
    ("00054-4741-25", "Prednisone 20 mg tablet", "TAB", 4, 300, 900, "Hikma", 5),
    ("00641-0376-25", "Diphenhydramine 50 mg/mL, 1 mL vial", "VIAL", 110, 100, 300, "Hikma", 5),
    ("00641-0928-25", "Promethazine 25 mg/mL, 1 mL vial", "VIAL", 150, 40, 120, "Hikma", 5),
    ("25021-0810-02", "Prochlorperazine 10 mg/2 mL vial", "VIAL", 820, 40, 120, "Sagent", 6),
    ("00409-3414-01", "Metoclopramide 10 mg/2 mL vial", "VIAL", 95, 100, 300, "Pfizer", 5),
    ("00487-9501-03", "Albuterol 2.5 mg/3 mL inhalation solution", "EA", 28, 500, 1_500, "McKesson", 2),
    ("00487-0201-03", "Ipratropium-albuterol 0.5/3 mg/3 mL nebule", "EA", 42, 500, 1_500, "McKesson", 2),
    ("00409-6729-23", "Magnesium sulfate 2 g/50 mL premix", "BAG", 480, 60, 180, "Pfizer", 5),
    ("63323-0360-10", "Calcium gluconate 1 g/10 mL vial", "VIAL", 1_150, 40, 120, "Fresenius Kabi", 5),
    ("00409-6637-34", "Sodium bicarbonate 8.4% 50 mEq/50 mL syringe", "SYR", 1_650, 30, 90, "Pfizer", 5),
    ("63323-0012-01", "Oxytocin 10 units/mL, 1 mL vial", "VIAL", 95, 100, 300, "Fresenius Kabi", 5),
    ("00143-9750-10", "Methylergonovine 0.2 mg/mL, 1 mL ampule", "AMP", 2_850, 10, 30, "Hikma", 5),
    ("00703-2510-03", "Carboprost 250 mcg/mL, 1 mL ampule", "AMP", 9_800, 6, 18, "McKesson", 2),
    ("00143-9697-10", "Terbutaline 1 mg/mL, 1 mL vial", "VIAL", 1_950, 10, 30, "Hikma", 5),
    ("00944-2967-01", "Rho(D) immune globulin 300 mcg syringe", "SYR", 11_500, 6, 18, "McKesson", 3),
    ("00006-4981-00", "Hepatitis B vaccine, pediatric, 0.5 mL syringe", "SYR", 2_450, 20, 60, "McKesson", 3),
    ("00409-9158-01", "Phytonadione 1 mg/0.5 mL ampule", "AMP", 620, 30, 90, "Pfizer", 5),
    ("24208-0910-19", "Erythromycin ophthalmic ointment 0.5%, 1 g tube", "EA", 240, 30, 90, "McKesson", 2),
    ("00703-4244-01", "Carboplatin 10 mg/mL, 45 mL vial", "VIAL", 3_600, 10, 30, "McKesson", 3),
    ("00703-5748-11", "Cisplatin 1 mg/mL, 100 mL vial", "VIAL", 2_900, 6, 18, "McKesson", 3),
    ("00703-4768-01", "Paclitaxel 6 mg/mL, 50 mL vial", "VIAL", 2_250, 6, 18, "McKesson", 3),
    ("00703-5720-01", "Docetaxel 20 mg/mL, 4 mL vial", "VIAL", 4_800, 6, 18, "McKesson", 3),
    ("63323-0117-10", "Fluorouracil 50 mg/mL, 10 mL vial", "VIAL", 390, 10, 30, "Fresenius Kabi", 5),
    ("00703-5820-01", "Pemetrexed 500 mg vial", "VIAL", 14_500, 4, 12, "McKesson", 3),
    ("00006-3026-02", "Pembrolizumab 100 mg/4 mL vial", "VIAL", 565_000, 2, 6, "McKesson", 1),
    ("00069-0315-01", "Bevacizumab-bvzr 100 mg/4 mL vial", "VIAL", 48_500, 2, 6, "Pfizer", 3),
    ("55513-0190-01", "Pegfilgrastim 6 mg/0.6 mL prefilled syringe", "SYR", 398_000, 2, 6, "McKesson", 1),
    ("00069-0291-10", "Filgrastim-aafi 300 mcg/0.5 mL prefilled syringe", "SYR", 19_500, 6, 18, "Pfizer", 3),
    ("00006-3884-01", "Fosaprepitant 150 mg vial", "VIAL", 4_900, 10, 30, "McKesson", 2),
    ("25021-0812-05", "Palonosetron 0.25 mg/5 mL vial", "VIAL", 1_250, 10, 30, "Sagent", 6),
    ("50242-0085-27", "Alteplase 100 mg vial with diluent", "VIAL", 985_000, 1, 3, "Cardinal Health", 1),
    ("25021-0813-10", "Tranexamic acid 1 g/10 mL vial", "VIAL", 420, 30, 90, "Sagent", 6),
    ("63323-0474-01", "Haloperidol lactate 5 mg/mL, 1 mL vial", "VIAL", 160, 40, 120, "Fresenius Kabi", 5),
    ("68180-0186-01", "Quetiapine 25 mg tablet", "TAB", 4, 200, 600, "McKesson", 2),
    ("00904-6414-61", "Senna 8.6 mg tablet", "TAB", 1, 1_000, 3_000, "Cardinal Health", 3),
    ("00904-7181-61", "Docusate sodium 100 mg capsule", "CAP", 1, 1_000, 3_000, "Cardinal Health", 3),
    ("00904-6930-42", "Polyethylene glycol 3350, 17 g packet", "PKT", 18, 300, 900, "Cardinal Health", 3),
    ("68180-0854-01", "Potassium chloride ER 20 mEq tablet", "TAB", 9, 300, 900, "McKesson", 2),
    ("00904-6853-29", "Nicotine transdermal patch 21 mg/24 h", "PATCH", 165, 60, 180, "Cardinal Health", 3),
    ("00409-1877-05", "Levetiracetam 500 mg/5 mL vial", "VIAL", 260, 40, 120, "Pfizer", 5),
)

# Implants: (description, unit cost, reorder point, par level, supplier, lead days); codes IMP5001 upwards,
# stocking unit EA, held in implant inventory (often consigned, hence short lead times and low pars).
IMPLANT_ITEMS: tuple[tuple[str, int, int, int, str, int], ...] = (
    ("Femoral stem, cementless, titanium, size 12", 310_000, 2, 4, "Stryker", 2),
    ("Acetabular shell, cementless, 54 mm", 240_000, 2, 4, "Stryker", 2),
    ("Acetabular liner, highly cross-linked polyethylene, 36 mm", 95_000, 2, 4, "Stryker", 2),
    ("Femoral head, ceramic, 36 mm", 140_000, 2, 4, "Stryker", 2),
    ("Bipolar hemiarthroplasty head, 46 mm", 150_000, 1, 3, "Stryker", 2),
    ("Total knee femoral component, cemented, size 5", 280_000, 2, 4, "Zimmer Biomet", 2),
    ("Total knee tibial baseplate, size 5", 190_000, 2, 4, "Zimmer Biomet", 2),
    ("Tibial articular surface insert, 10 mm", 85_000, 2, 4, "Zimmer Biomet", 2),
    ("Patellar component, all-polyethylene, 35 mm", 42_000, 2, 4, "Zimmer Biomet", 2),
    ("Distal fibula locking plate, 8-hole", 92_000, 1, 3, "Zimmer Biomet", 2),
    ("Distal radius volar locking plate, standard", 78_000, 1, 3, "Stryker", 2),
    ("Cortical screw, 3.5 mm x 14 mm", 7_500, 20, 60, "Zimmer Biomet", 2),
    ("Locking screw, 3.5 mm x 16 mm", 14_500, 20, 60, "Zimmer Biomet", 2),
    ("Cannulated screw, 6.5 mm x 80 mm", 28_000, 6, 18, "Stryker", 2),
    ("Cephalomedullary nail, femoral, 11 x 380 mm", 210_000, 1, 3, "Stryker", 2),
    ("Suture anchor, 5.0 mm, double loaded", 42_000, 4, 12, "Stryker", 2),
    ("Dual-chamber pacemaker, MRI-conditional", 620_000, 1, 3, "Medtronic", 1),
    ("Pacemaker lead, active fixation, 52 cm", 95_000, 2, 6, "Medtronic", 1),
    ("Pacemaker lead, active fixation, 58 cm", 95_000, 2, 6, "Medtronic", 1),
    ("Implantable cardioverter-defibrillator, single chamber", 1_850_000, 1, 2, "Medtronic", 1),
    ("Implantable cardiac loop recorder", 480_000, 1, 3, "Medtronic", 1),
    ("Drug-eluting coronary stent, 3.0 x 18 mm", 135_000, 2, 6, "Medtronic", 1),
    ("Drug-eluting coronary stent, 3.5 x 23 mm", 135_000, 2, 6, "Medtronic", 1),
    ("Drug-eluting coronary stent, 2.75 x 15 mm", 135_000, 2, 6, "Medtronic", 1),
    ("Implanted venous access port, single lumen, power-injectable", 52_000, 2, 6, "BD", 3),
    ("Hernia mesh, polypropylene, 15 x 15 cm", 36_000, 3, 9, "Medtronic", 3),
    ("Ventral hernia mesh, composite, 20 x 25 cm", 185_000, 1, 3, "BD", 3),
    ("Inferior vena cava filter, retrievable", 165_000, 1, 3, "BD", 3),
    ("Ureteral stent, 6 Fr x 26 cm", 21_000, 3, 9, "BD", 3),
    ("Pedicle screw, polyaxial, 6.5 x 45 mm", 95_000, 4, 12, "Medtronic", 2),
    ("Spinal rod, titanium, 5.5 x 100 mm", 62_000, 2, 6, "Medtronic", 2),
    ("Lumbar interbody cage, PEEK, 10 mm", 380_000, 1, 3, "Medtronic", 2),
)
_IMPLANT_FIRST_NUMBER = 5001


# --- Building ------------------------------------------------------------------------------------------


def _supply_code(index: int) -> str:
    return f"SUP{_SUPPLY_FIRST_NUMBER + index}"


def _npis(count: int) -> list[str]:
    """Return ``count`` distinct, well-formed NPIs (Luhn check digit over the 80840 prefix), seeded."""
    rng = random.Random(_NPI_SEED)
    out: list[str] = []
    while len(out) < count:
        body = f"1{rng.randrange(10**8):08d}"
        npi = body + _npi_check_digit(body)
        if npi not in out:
            out.append(npi)
    return out


def _npi_check_digit(body: str) -> str:
    """Return the NPI check digit of a 9-digit body: the Luhn digit of '80840' + body."""
    total = 0
    for position, char in enumerate(reversed("80840" + body)):
        digit = int(char)
        if position % 2 == 0:  # every second digit from the right, starting with the rightmost
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


def _manifest() -> MasterDataManifest:
    return MasterDataManifest(
        version=VERSION,
        description=DESCRIPTION,
        registry=tuple(
            SourceOfRecord(domain=domain, system=system, owner=owner) for domain, system, owner in REGISTRY
        ),
    )


def _organisation() -> dict[str, tuple[object, ...]]:
    legal_entities = tuple(
        LegalEntity(code=code, name=name, receivables_account=RECEIVABLES) for code, name in LEGAL_ENTITIES
    )
    business_units = tuple(
        BusinessUnit(code=code, name=name, legal_entity=entity) for code, name, entity in BUSINESS_UNITS
    )
    facilities = tuple(
        Facility(
            code=code,
            name=name,
            legal_entity=entity,
            business_unit=unit,
            city=city,
            state=state,
            npi=FACILITY_BILLING[code][0],
            tax_id=FACILITY_BILLING[code][1],
            address_line=FACILITY_BILLING[code][2],
            postal_code=FACILITY_BILLING[code][3],
            taxonomy_code=FACILITY_BILLING[code][4],
        )
        for code, name, entity, unit, city, state, _ in FACILITIES
    )
    centres: list[CostCentre] = []
    departments: list[Department] = []
    for code, _, _, unit, _, _, short in FACILITIES:
        for department in FACILITY_DEPARTMENTS[code]:
            name, number = DEPARTMENT_TYPES[department]
            closed = CLOSED_DEPARTMENTS.get((code, department))
            centre = f"{code}-{number}"
            centres.append(
                CostCentre(
                    code=centre,
                    name=f"{short} {name}" + (f" ({closed})" if closed else ""),
                    business_unit=unit,
                    active=closed is None,
                )
            )
            departments.append(Department(facility=code, code=department, name=name, cost_centre=centre))
    centres.extend(
        CostCentre(code=code, name=name, business_unit="BU-NPP") for code, name in GROUP_COST_CENTRES
    )
    locations = tuple(
        Location(facility=facility, code=code, name=name, department=department, kind=kind, active=active)
        for facility, code, name, department, kind, active in LOCATIONS
    )
    return {
        "legal_entities": legal_entities,
        "business_units": business_units,
        "cost_centres": tuple(centres),
        "facilities": facilities,
        "departments": tuple(departments),
        "locations": locations,
    }


def _items() -> tuple[Item, ...]:
    supplies = [
        Item(
            item_code=_supply_code(index),
            code_system="SUPPLY",
            description=description,
            category=ItemCategory.SUPPLY,
            unit=unit,
            gl_account=SUPPLY_INVENTORY,
            unit_cost_cents=cost,
            reorder_point=reorder,
            par_level=par,
            supplier=supplier,
            lead_time_days=lead,
        )
        for index, (description, unit, cost, reorder, par, supplier, lead, _) in enumerate(SUPPLY_ITEMS)
    ]
    drugs = [
        Item(
            item_code=ndc,
            code_system="NDC",
            description=description,
            category=ItemCategory.DRUG,
            unit=unit,
            gl_account=PHARMACY_INVENTORY,
            unit_cost_cents=cost,
            reorder_point=reorder,
            par_level=par,
            supplier=supplier,
            lead_time_days=lead,
        )
        for ndc, description, unit, cost, reorder, par, supplier, lead in DRUG_ITEMS
    ]
    implants = [
        Item(
            item_code=f"IMP{_IMPLANT_FIRST_NUMBER + index}",
            code_system="IMPLANT",
            description=description,
            category=ItemCategory.IMPLANT,
            unit="EA",
            gl_account=IMPLANT_INVENTORY,
            unit_cost_cents=cost,
            reorder_point=reorder,
            par_level=par,
            supplier=supplier,
            lead_time_days=lead,
        )
        for index, (description, cost, reorder, par, supplier, lead) in enumerate(IMPLANT_ITEMS)
    ]
    return (*supplies, *drugs, *implants)


def _revenue_code(code_system: str, account: str) -> str:
    """The NUBC revenue code of a charge code: drugs with a HCPCS J code are 0636, else by account."""
    if code_system == "HCPCS" and account == "4400":
        return "0636"  # drugs requiring detailed coding
    return REVENUE_CODES[account]


def _charge_codes() -> tuple[ChargeCode, ...]:
    cdm = [
        ChargeCode(
            code=code,
            code_system=system,
            description=description,
            revenue_account=account,
            price_cents=price,
            revenue_code=_revenue_code(system, account),
            claim_kind=ClaimKind.PROFESSIONAL if account == PROFESSIONAL_FEES else ClaimKind.INSTITUTIONAL,
        )
        for code, system, description, account, price in CHARGE_CODES
    ]
    cdm.extend(
        ChargeCode(
            code=_supply_code(index),
            code_system="SUPPLY",
            description=description,
            revenue_account=SUPPLIES,
            price_cents=price,
            revenue_code=REVENUE_CODES[SUPPLIES],
        )
        for index, (description, _, _, _, _, _, _, price) in enumerate(SUPPLY_ITEMS)
        if price
    )
    return tuple(cdm)


def build() -> MasterDataSet:
    """Return the demo master-data set (deterministic: equal on every call)."""
    accounts = tuple(
        GlAccount(account=account, name=name, account_type=kind, active=active)
        for account, name, kind, active in ACCOUNTS
    )
    providers = tuple(
        Provider(
            npi=npi,
            family_name=family,
            given_name=given,
            specialty=specialty,
            facility=facility,
            department=department,
            active=active,
        )
        for npi, (family, given, specialty, facility, department, active) in zip(
            _npis(len(PROVIDERS)), PROVIDERS, strict=True
        )
    )
    payers = tuple(
        Payer(payer_id=payer_id, name=name, payer_type=kind, plan=plan)
        for payer_id, name, kind, plan in PAYERS
    )
    return MasterDataSet.model_validate(
        {
            "manifest": _manifest(),
            "accounts": accounts,
            **_organisation(),
            "providers": providers,
            "items": _items(),
            "charge_codes": _charge_codes(),
            "payers": payers,
        }
    )


def write_demo(directory: Path = DEMO_DIR) -> MasterDataSet:
    """Build the set, write it to ``directory`` and read it back; raise when it is not valid or differs."""
    data = build()
    problems = data.problems()
    if problems:
        raise ValueError("demo master data is inconsistent:\n" + "\n".join(p.describe() for p in problems))
    write_set(data, directory)
    reread = read_set(directory)  # raises MasterDataFileError listing every problem
    if reread.digest() != data.digest():
        raise ValueError(f"{directory}: the set read back differs from the set written")
    return reread


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write the demo set to OUT_DIR (default: the shipped demo directory)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) > 1 or any(arg in ("-h", "--help") for arg in args):
        print("usage: python -m cluster.masterdata.build_demo [OUT_DIR]", file=sys.stderr)
        return 2
    directory = Path(args[0]) if args else DEMO_DIR
    data = write_demo(directory)
    counts = ", ".join(f"{domain} {count}" for domain, count in data.counts().items())
    print(f"wrote master data {data.version} to {directory}: {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
