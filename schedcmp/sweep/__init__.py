"""A comparison's cells through plan -> execute -> finish, and the results folder that holds them."""
