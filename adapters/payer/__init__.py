"""The reference payer and clearinghouse of the embedded stack: eligibility, claims and remittances."""
