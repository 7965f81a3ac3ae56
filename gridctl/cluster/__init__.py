"""Several gridctl instances sharing sites through leases in PostgreSQL (`gridctl run --cluster`)."""
