"""Stage 2, transform: dbt owns every transformation (staging, intermediate, marts); this
package only knows where the dbt project is and how to run dbt with the pipeline's settings."""
