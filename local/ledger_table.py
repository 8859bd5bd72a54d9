"""The ledger table as template.yaml declares it (LedgerTable: keys, the sparse `ca-windows`
index a coverage request scans, TTL on `expires_at`), for the demo and the command tests."""


def create_ledger_table(dynamodb, name: str) -> None:
    dynamodb.create_table(
        TableName=name,
        AttributeDefinitions=[
            {"AttributeName": "certificate_authority_arn", "AttributeType": "S"},
            {"AttributeName": "record", "AttributeType": "S"},
            {"AttributeName": "account_id", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "certificate_authority_arn", "KeyType": "HASH"},
            {"AttributeName": "record", "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "ca-windows",
                "KeySchema": [
                    {"AttributeName": "account_id", "KeyType": "HASH"},
                    {"AttributeName": "certificate_authority_arn", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
    )
