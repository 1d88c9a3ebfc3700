"""Who may send as which feed: the MLLP gateway's allowlist (``HCSYNC_MLLP_ALLOWED_SENDERS``).

Each rule names a connection, by its peer address (an IP address or a CIDR) or by the common name of the
client certificate it presented (``CN=lab-engine``, only with mutual TLS), and the feeds it may send as:
a sending application (MSH-3.1), an application at a facility (MSH-3.1^MSH-4.1), or ``*``, as in
``HCSYNC_STRICT_VALIDATION_FEEDS``. A connection may send as the feeds of every rule it matches. With no
rule at all, anyone may send as any feed (the default: the listener binds to the loopback address).

A peer address is what the connection came from: behind a NAT or a load balancer that does not keep it,
every sender looks alike, and only certificate rules tell them apart.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from canonical.errors import ConfigurationError, Fault
from canonical.hl7v2.parser import Hl7Message
from foundation.settings import Settings

__all__ = ["SENDER_RULE", "SenderRules", "peer_common_name"]

# The rule an ERR names when a sender is refused.
SENDER_RULE = "MLLP-SENDER-NOT-ALLOWED"

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_CN_PREFIX = "CN="


@dataclass(frozen=True, slots=True)
class SenderRules:
    """The allowlist: feeds per peer network and per client certificate common name."""

    networks: tuple[tuple[_Network, frozenset[str]], ...] = ()
    names: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, rules: Mapping[str, Sequence[str]]) -> SenderRules:
        """Build the rules from the setting's JSON object (validated by the settings already)."""
        networks: list[tuple[_Network, frozenset[str]]] = []
        names: dict[str, frozenset[str]] = {}
        for key, feeds in rules.items():
            allowed = frozenset(feed.strip() for feed in feeds)
            if key[: len(_CN_PREFIX)].upper() == _CN_PREFIX:
                name = key[len(_CN_PREFIX) :].strip()
                names[name] = names.get(name, frozenset()) | allowed
                continue
            try:
                networks.append((ipaddress.ip_network(key.strip(), strict=False), allowed))
            except ValueError as exc:
                raise ConfigurationError(f"HCSYNC_MLLP_ALLOWED_SENDERS: key {key!r}: {exc}") from None
        return cls(tuple(networks), names)

    @classmethod
    def from_settings(cls, settings: Settings) -> SenderRules:
        """Return the rules of ``mllp_allowed_senders``."""
        return cls.parse(settings.mllp_allowed_senders)

    @property
    def enabled(self) -> bool:
        """Say whether there is an allowlist at all (without one, anyone sends as any feed)."""
        return bool(self.networks or self.names)

    @property
    def names_certificates(self) -> bool:
        """Say whether a rule names a client certificate (which only mutual TLS makes trustworthy)."""
        return bool(self.names)

    def feeds_for(self, address: str, common_name: str | None) -> frozenset[str]:
        """Return the feeds a connection from ``address``, with this certificate name, may send as."""
        feeds: frozenset[str] = frozenset()
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            ip = None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # a dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d
        if ip is not None:
            for network, allowed in self.networks:
                if ip.version == network.version and ip in network:
                    feeds |= allowed
        if common_name is not None:
            feeds |= self.names.get(common_name, frozenset())
        return feeds

    @staticmethod
    def permits(feeds: frozenset[str], msg: Hl7Message) -> bool:
        """Say whether a message's feed (MSH-3.1, or MSH-3.1^MSH-4.1) is among ``feeds``."""
        return "*" in feeds or msg.sending_application in feeds or msg.sender in feeds

    @staticmethod
    def fault(msg: Hl7Message) -> Fault:
        """Return the fault a refused sender's AR names: the rule and the fields, not their values."""
        return Fault(
            rule=SENDER_RULE,
            reason=(
                "this connection may not send as this sending application and facility (MSH-3, MSH-4): "
                "see HCSYNC_MLLP_ALLOWED_SENDERS; the message was not stored"
            ),
            message_id=msg.control_id,
            segment="MSH",
            field="MSH-3",
            position=0,
        )


def peer_common_name(peercert: object) -> str | None:
    """Return the common name of a verified peer certificate (``ssl``'s getpeercert() dict), if any."""
    if not isinstance(peercert, dict):
        return None
    for rdn in peercert.get("subject", ()):
        for attribute in rdn:
            if len(attribute) == 2 and attribute[0] == "commonName":
                return str(attribute[1])
    return None
