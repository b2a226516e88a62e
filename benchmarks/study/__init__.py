"""With/without-LARA study grids (`lara study`): cells of training runs and LIBERO evaluations, and their statistics."""
