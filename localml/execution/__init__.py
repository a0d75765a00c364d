"""How jobs run: preparing a spec at submission, and the detached runner process that executes it."""
