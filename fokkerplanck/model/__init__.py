"""The user's model: the grid (and the frame it is drawn in), the loss landscape ``L``, the noise tensor ``D``,
the problem that joins them, the density fields that live on the grid, and the memory budget of a grid size.
No numerics here: everything below this line is a function of ``theta``."""
