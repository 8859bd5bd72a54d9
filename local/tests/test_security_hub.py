"""Security Hub's findings operations, held to the documented behaviour the function relies on."""

import pytest
from botocore.exceptions import ClientError


def product(account) -> str:
    return f"arn:aws:securityhub:{account.region}:{account.id}:product/{account.id}/default"


def finding(account, finding_id="f-1", **fields) -> dict:
    base = {
        "SchemaVersion": "2018-10-08",
        "Id": finding_id,
        "ProductArn": product(account),
        "GeneratorId": "test",
        "AwsAccountId": account.id,
        "Types": ["Software and Configuration Checks/Industry and Regulatory Standards"],
        "CreatedAt": "2026-01-01T00:00:00.000Z",
        "UpdatedAt": "2026-01-01T00:00:00.000Z",
        "Severity": {"Label": "MEDIUM"},
        "Title": "t",
        "Description": "d",
        "Resources": [{"Type": "Other", "Id": f"arn:aws:acm-pca:us-east-1:{account.id}:certificate-authority/{finding_id}"}],
        "RecordState": "ACTIVE",
        "Compliance": {"Status": "FAILED"},
    }
    return {**base, **fields}


@pytest.fixture
def hub(account):
    client = account.client("securityhub")
    client.enable_security_hub()
    return client


def get(hub, **filters):
    flt = {k: [{"Value": v, "Comparison": "EQUALS"}] for k, v in filters.items()}
    return hub.get_findings(Filters=flt)["Findings"]


def test_an_account_without_security_hub_imports_nothing(account):
    client = account.client("securityhub")
    with pytest.raises(ClientError) as e:
        client.batch_import_findings(Findings=[finding(account)])
    assert e.value.response["Error"]["Code"] == "InvalidAccessException"


def test_a_finding_of_another_account_or_product_is_refused_alone(account, hub):
    out = hub.batch_import_findings(
        Findings=[
            finding(account, "other-account", AwsAccountId="123456789012"),
            finding(account, "other-product", ProductArn=product(account).replace("/default", "/x")),
            finding(account, "fine"),
        ]
    )
    assert out["SuccessCount"] == 1 and out["FailedCount"] == 2
    assert {f["Id"] for f in out["FailedFindings"]} == {"other-account", "other-product"}
    with pytest.raises(ClientError):
        hub.batch_import_findings(Findings=[finding(account, str(i)) for i in range(101)])


def test_filters_are_applied(account, hub):
    hub.batch_import_findings(Findings=[finding(account, "a"), finding(account, "b", RecordState="ARCHIVED")])
    assert [f["Id"] for f in get(hub, Id="a")] == ["a"]
    assert [f["Id"] for f in get(hub, RecordState="ARCHIVED")] == ["b"]
    resource = f"arn:aws:acm-pca:us-east-1:{account.id}:certificate-authority/b"
    assert [f["Id"] for f in get(hub, ResourceId=resource)] == ["b"]
    assert get(hub, Id="nothing") == []
    with pytest.raises(ClientError):
        hub.get_findings(Filters={"Confidence": [{"Gte": 1}]})


def test_a_new_finding_is_new_and_a_reimport_updates_it_keeping_the_customers_workflow(account, hub):
    hub.batch_import_findings(Findings=[finding(account, "w", Workflow={"Status": "SUPPRESSED"})])
    (f,) = get(hub, Id="w")
    assert f["Workflow"]["Status"] == "NEW", "a provider does not set the workflow"
    out = hub.batch_update_findings(
        FindingIdentifiers=[{"Id": "w", "ProductArn": product(account)}, {"Id": "none", "ProductArn": product(account)}],
        Workflow={"Status": "RESOLVED"},
    )
    assert out["ProcessedFindings"] == [{"Id": "w", "ProductArn": product(account)}]
    assert out["UnprocessedFindings"][0]["ErrorCode"] == "FindingNotFound"
    archived = finding(account, "w", RecordState="ARCHIVED", Compliance={"Status": "PASSED"}, Title="again")
    archived["UpdatedAt"] = "2026-01-02T00:00:00.000Z"
    hub.batch_import_findings(Findings=[archived])
    (f,) = get(hub, Id="w")
    assert (f["Title"], f["RecordState"], f["Compliance"]["Status"], f["Workflow"]["Status"]) == (
        "again",
        "ARCHIVED",
        "PASSED",
        "RESOLVED",
    )
    # Active and failing again: Security Hub sets the workflow back to NEW.
    hub.batch_import_findings(Findings=[finding(account, "w")])
    assert get(hub, Id="w")[0]["Workflow"]["Status"] == "NEW"
