"""The AI revenue concentration warehouse: loading, auditing and publishing around dbt."""
