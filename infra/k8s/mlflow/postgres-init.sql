-- Runs once, when the data volume is empty: the database of MLflow's users and permissions
-- (the tracking database, mlflow, is created from POSTGRES_DB).
CREATE DATABASE mlflow_auth OWNER mlflow;
