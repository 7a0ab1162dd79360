"""Stage 3, audit: what the publish decision needs and dbt's own tests cannot say (the reported
claims, row counts against the previous publish, month contiguity, reconciliation with the
landing folder)."""
