-- Datasets of three formats (issue 12): Hive-partitioned Parquet folders (every dataset so
-- far), Delta Lake tables (root_url is the table root) and Apache Iceberg tables (a catalog
-- configured under [iceberg.catalogs.NAME] and a NAMESPACE.TABLE identifier; root_url is the
-- table location). The catalog's URI and credentials stay in the configuration.
ALTER TABLE datasets ADD COLUMN format TEXT NOT NULL DEFAULT 'parquet';
ALTER TABLE datasets ADD COLUMN iceberg_catalog TEXT;
ALTER TABLE datasets ADD COLUMN iceberg_table TEXT;
