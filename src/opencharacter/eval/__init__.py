"""Role-play evaluation: PersonaGym's five tasks judged 1–5, and a judge-free character-fidelity score."""
