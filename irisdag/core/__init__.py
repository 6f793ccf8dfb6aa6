"""Pure core: no Dagster, no Redis. Key scheme, validation, routing, statistics,
strategies and decisions, the data generator. Unit-tested in milliseconds."""
