-- docker/compose.yaml: the demo CRM (and the dispatch ledger) beside Airflow's database.
CREATE DATABASE crm;
