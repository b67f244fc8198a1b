"""The stand-in TF Serving 2.20 (`tfs-traffic sim`): flags, config lifecycle, service layer, gRPC, REST, JSON, errors.

Public: `server.Sim` and `server.run_forever`. Imports only the shared leaves (contract, errors,
exposition).
"""
