"""The SGD science built on the generic machinery: closed-form theory, the adiabatic (slow-variable) reduction,
flatness and valley statistics, and the phase diagrams and search times of Yang, Tang & Tu (PRL 130, 237101)."""
