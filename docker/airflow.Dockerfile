# The Airflow image of docker-compose.yml: the official image at the version uv.lock pins,
# plus the project's locked dependencies (dbt, Cosmos, GX, DuckDB). The project itself is
# mounted at /opt/warehouse, not copied, so DAG and model edits need no rebuild.
FROM apache/airflow:3.3.2-python3.11

# WAREHOUSE_EXTRAS=spark adds the `spark` extra (dbt-spark, pyspark) for WAREHOUSE_ENGINE=spark.
ARG WAREHOUSE_EXTRAS=""
COPY --chown=airflow:root pyproject.toml uv.lock /tmp/project/
RUN pip install --no-cache-dir uv==0.13.9 \
 && uv export --project /tmp/project --frozen --no-dev --no-emit-project --no-hashes \
      ${WAREHOUSE_EXTRAS:+--extra ${WAREHOUSE_EXTRAS}} \
      --output-file /tmp/project/requirements.txt \
 && pip install --no-cache-dir -r /tmp/project/requirements.txt \
 && rm -rf /tmp/project
