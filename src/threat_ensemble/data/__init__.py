"""Tables in, model inputs out: reading and checking tables, preprocessing, the DataModule, the default data set."""
