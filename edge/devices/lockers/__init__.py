"""The parcel-locker bank: CU16 and Modbus buses, GPIO lockers, offline pickup."""
