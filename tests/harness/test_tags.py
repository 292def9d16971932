"""AddTags / ListTags / DeleteTags and Tags given at Create*, as a boto3 user sees them."""

from __future__ import annotations

from tests.harness.conftest import IMAGE, boto_clients, wait_in_service
from tests.harness.test_control_plane import error_of

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
ARN = "arn:aws:sagemaker:us-east-1:123456789012"


def _tags(sm, arn: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn)["Tags"]}


def test_tags_given_at_create_are_kept_per_resource(fake_harness):
    sm, _ = boto_clients(fake_harness.endpoint_url)
    model_arn = sm.create_model(ModelName="Tagged", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE},
                                Tags=[{"Key": "team", "Value": "ml"}])["ModelArn"]
    config_arn = sm.create_endpoint_config(
        EndpointConfigName="tagged", Tags=[{"Key": "stage", "Value": "dev"}],
        ProductionVariants=[{"VariantName": "v", "ModelName": "Tagged", "InstanceType": "ml.m5.large",
                             "InitialInstanceCount": 1}])["EndpointConfigArn"]
    endpoint_arn = sm.create_endpoint(EndpointName="tagged", EndpointConfigName="tagged",
                                      Tags=[{"Key": "owner", "Value": "me"}])["EndpointArn"]
    assert model_arn == f"{ARN}:model/tagged"
    assert _tags(sm, model_arn) == {"team": "ml"}
    assert _tags(sm, config_arn) == {"stage": "dev"}
    assert _tags(sm, endpoint_arn) == {"owner": "me"}
    assert _tags(sm, f"{ARN}:model/TAGGED") == {"team": "ml"}  # names are case-insensitive
    wait_in_service(sm, "tagged")

    # Deleting a resource drops its tags; one created again under the name starts with none.
    sm.delete_model(ModelName="Tagged")
    assert error_of(sm.list_tags, ResourceArn=model_arn)["Message"] == f'Could not find model "{model_arn}".'
    sm.create_model(ModelName="tagged", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    assert _tags(sm, model_arn) == {}


def test_add_list_delete_tags(fake_harness):
    sm, _ = boto_clients(fake_harness.endpoint_url)
    arn = sm.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})["ModelArn"]
    assert sm.list_tags(ResourceArn=arn)["Tags"] == []
    answer = sm.add_tags(ResourceArn=arn, Tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}])
    assert answer["Tags"] == [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": "a", "Value": "changed"}])  # overwrites, keeps its place
    assert sm.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "a", "Value": "changed"}, {"Key": "b", "Value": "2"}]
    sm.delete_tags(ResourceArn=arn, TagKeys=["b", "never-there"])  # absent keys are fine
    assert _tags(sm, arn) == {"a": "changed"}


def test_tag_rules_follow_aws(fake_harness):
    sm, _ = boto_clients(fake_harness.endpoint_url)
    arn = sm.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})["ModelArn"]

    for call, kwargs in ((sm.add_tags, {"Tags": [{"Key": "AWS:owner", "Value": "x"}]}),
                         (sm.delete_tags, {"TagKeys": ["aws:cloudformation:stack-name"]})):
        error = error_of(call, ResourceArn=arn, **kwargs)
        assert error["Code"] == "ValidationException"
        assert error["Message"].startswith("System prefix 'aws:' reserved for AWS usage in tag key: ")
    error = error_of(sm.create_model, ModelName="n", PrimaryContainer={"Image": IMAGE},
                     Tags=[{"Key": "aws:x", "Value": "y"}])
    assert error["Message"] == "System prefix 'aws:' reserved for AWS usage in tag key: aws:x"
    assert error_of(sm.describe_model, ModelName="n")["Message"].startswith("Could not find model")

    # At most 50 tags a resource: one request's maximum is botocore's model; the total is the resource's.
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": f"k{i}", "Value": ""} for i in range(45)])
    error = error_of(sm.add_tags, ResourceArn=arn, Tags=[{"Key": f"n{i}", "Value": ""} for i in range(6)])
    assert error["Message"] == f'Resource "{arn}" would have 51 tags; a resource may have at most 50.'
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(5)]
                + [{"Key": f"n{i}", "Value": ""} for i in range(5)])  # 5 overwrite + 5 new = 50
    error = error_of(sm.add_tags, ResourceArn=arn, Tags=[{"Key": f"x{i}", "Value": ""} for i in range(51)])
    assert "at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50" \
        in error["Message"]
    error = error_of(sm.add_tags, ResourceArn=arn, Tags=[{"Key": "bad#key", "Value": ""}])
    assert "Value 'bad#key' at 'tags.1.member.key' failed to satisfy constraint" in error["Message"]

    # Paging: MaxResults is at least 50 (botocore checks that on the client), 50 by default, so the
    # 50 tags a resource may hold come in one page.
    assert len(sm.list_tags(ResourceArn=arn)["Tags"]) == 50
    assert "NextToken" not in sm.list_tags(ResourceArn=arn, MaxResults=50)
    keys = [t["Key"] for t in sm.get_paginator("list_tags").paginate(ResourceArn=arn).build_full_result()["Tags"]]
    assert len(keys) == 50 and keys[0] == "k0"


def test_unknown_resources_are_validation_errors(fake_harness):
    sm, _ = boto_clients(fake_harness.endpoint_url)
    sm.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    cases = {
        f"{ARN}:endpoint/nope": f'Could not find endpoint "{ARN}:endpoint/nope".',
        f"{ARN}:endpoint-config/nope": f'Could not find endpoint configuration "{ARN}:endpoint-config/nope".',
        f"{ARN}:training-job/m": f'Could not find resource "{ARN}:training-job/m".',
        "arn:aws:sagemaker:eu-west-1:123456789012:model/m": (  # same name, another region
            'Could not find model "arn:aws:sagemaker:eu-west-1:123456789012:model/m".'),
    }
    for arn, message in cases.items():
        for call, kwargs in ((sm.list_tags, {}), (sm.add_tags, {"Tags": []}), (sm.delete_tags, {"TagKeys": ["a"]})):
            error = error_of(call, ResourceArn=arn, **kwargs)
            assert (error["Code"], error["Message"]) == ("ValidationException", message)
    error = error_of(sm.list_tags, ResourceArn="not-an-arn")
    assert "at 'resourceArn' failed to satisfy constraint: Member must satisfy regular expression pattern" \
        in error["Message"]

