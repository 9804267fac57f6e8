"""``evapp bench``: speed measurements, always printed with a description of the machine they ran on
(:func:`evapp.machine.describe_machine`)."""
