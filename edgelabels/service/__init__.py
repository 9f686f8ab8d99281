"""The local Rekognition Custom Labels service (issue 27): ARNs, the SQLite state store, and (later) the operations."""
