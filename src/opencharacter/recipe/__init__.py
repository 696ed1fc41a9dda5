"""The paper's experiment as one command: split → data → filters → train G and R → evaluate on held-out characters."""
