"""Pure domain model: specs, states, transitions, selection and events (stdlib only)."""
