"""Talk to a role-play model as a character: one-shot or interactive, local or over HTTP."""
