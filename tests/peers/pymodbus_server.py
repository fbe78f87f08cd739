#!/usr/bin/python3
"""A pymodbus peer for tests/interop_modbus.rs (Debian package python3-pymodbus, 3.0).

Serves unit 1 with a fixed register map (and unit 2, identical except input register 0), over Modbus TCP on 127.0.0.1:PORT
(--tcp PORT) or Modbus RTU on a serial device such as one end of a socat pty pair
(--rtu PATH, 19200 8N1: Linux ptys refuse parity settings with EINVAL). Addresses are zero-based wire addresses; registers not listed
below answer exception 2 (illegal data address) because the blocks are sparse.

Holding registers:
  0      i16  -125           (-12.5 with scale 0.1)
  1      u16  65000
  10-11  f32  230.5  ABCD    (0x4366 0x8000)
  12-13  f32  -17.25 CDAB    (0x0000 0xC18A)
  20-21  u32  3000000000 big    (0xB2D0 0x5E00)
  22-23  u32  123456789 little  (0xCD15 0x075B)
  100..  nothing: exception 2
Input registers:
  0      i16  235            (23.5 with scale 0.1); unit 2: -40 (-4.0)
Discrete inputs:
  3      1

Read Device Identification (function 43/14): unit 1 reports the identity below (VendorName
"Hallmonitor Test Peers", ProductCode "HM-PEER-1", MajorMinorRevision "3.0", and the regular
objects); unit 2 answers it with exception 1 (illegal function), as devices without the
function do. Other units answer exception 11 (gateway target failed to respond), or nothing
at all with --silent-missing, as on an RS-485 bus.
"""
import argparse
import asyncio
import logging

from pymodbus.datastore import ModbusServerContext, ModbusSlaveContext, ModbusSparseDataBlock
from pymodbus.device import ModbusDeviceIdentification
from pymodbus.pdu import ExceptionResponse
from pymodbus.server import StartAsyncSerialServer, StartAsyncTcpServer
from pymodbus.transaction import ModbusRtuFramer


def unit_context(inlet):
    hr = ModbusSparseDataBlock(
        {
            0: [0xFF83, 65000],
            10: [0x4366, 0x8000, 0x0000, 0xC18A],
            20: [0xB2D0, 0x5E00, 0xCD15, 0x075B],
        }
    )
    ir = ModbusSparseDataBlock({0: [inlet & 0xFFFF]})
    di = ModbusSparseDataBlock({0: [0, 0, 0, 1]})
    co = ModbusSparseDataBlock({0: [0]})
    return ModbusSlaveContext(hr=hr, ir=ir, di=di, co=co, zero_mode=True)


def context():
    return ModbusServerContext(slaves={1: unit_context(235), 2: unit_context(-40)}, single=False)


IDENTITY = {
    "VendorName": "Hallmonitor Test Peers",
    "ProductCode": "HM-PEER-1",
    "MajorMinorRevision": "3.0",
    "VendorUrl": "https://example.invalid/peer",
    "ProductName": "pymodbus peer",
    "ModelName": "peer-1",
}


def identity():
    ident = ModbusDeviceIdentification()
    for key, value in IDENTITY.items():
        setattr(ident, key, value)
    return ident


def without_identification_on_unit_2(response):
    """pymodbus serves one identity for every unit; unit 2 is made a device without it."""
    if response.function_code == 0x2B and response.unit_id == 2:
        replaced = ExceptionResponse(0x2B, 0x01)
        replaced.transaction_id = response.transaction_id
        replaced.unit_id = response.unit_id
        return replaced, False
    return response, False


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tcp", type=int, help="serve Modbus TCP on 127.0.0.1:PORT")
    parser.add_argument("--rtu", help="serve Modbus RTU on this serial device")
    parser.add_argument("--silent-missing", action="store_true", help="units not served do not answer")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.tcp is not None:
        await StartAsyncTcpServer(
            context=context(),
            identity=identity(),
            address=("127.0.0.1", args.tcp),
            response_manipulator=without_identification_on_unit_2,
            ignore_missing_slaves=args.silent_missing,
        )
    elif args.rtu:
        await StartAsyncSerialServer(
            context=context(),
            identity=identity(),
            response_manipulator=without_identification_on_unit_2,
            ignore_missing_slaves=args.silent_missing,
            framer=ModbusRtuFramer,
            port=args.rtu,
            baudrate=19200,
            bytesize=8,
            parity="N",
            stopbits=1,
        )
    else:
        parser.error("give --tcp PORT or --rtu PATH")


if __name__ == "__main__":
    asyncio.run(main())
