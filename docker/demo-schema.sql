-- The application schema, the same on both databases.
CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL, email text, tier text NOT NULL DEFAULT 'standard');
CREATE TABLE tickets (id bigint PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers, subject text NOT NULL, status text NOT NULL DEFAULT 'open');
