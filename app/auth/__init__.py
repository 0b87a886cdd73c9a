"""The Auth service's internal API: our client of it, and a dev server that speaks it locally."""
