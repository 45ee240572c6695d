-- duplex configuration for the compose demo, applied after `duplex init`.
-- Passwords are not here: the duplex service gets them from its environment.
INSERT INTO duplex.sites (site_id, name, engine, conninfo, password_env, tls_mode) VALUES
  (1, 'crm',     'postgresql', 'host=pg-a port=5432 user=postgres dbname=postgres', 'PG_A_PASSWORD', 'prefer'),
  (2, 'support', 'postgresql', 'host=pg-b port=5432 user=postgres dbname=postgres', 'PG_B_PASSWORD', 'prefer')
ON CONFLICT DO NOTHING;
INSERT INTO duplex.links (link_id, name, site_a, site_b) VALUES (1, 'crm_support', 1, 2) ON CONFLICT DO NOTHING;
INSERT INTO duplex.link_tables (link_id, schema_name, table_name) VALUES
  (1, 'public', 'customers'), (1, 'public', 'tickets')
ON CONFLICT DO NOTHING;
