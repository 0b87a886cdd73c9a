"""One send per delivery, the mail backends that send it, and what comes back from the provider."""
