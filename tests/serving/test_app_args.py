"""ServeArgs validation and the applications build_app makes (no cluster needed)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from multi_task_kobart.serving.app import ServeArgs, build_app
from multi_task_kobart.serving.schemas import GenerateRequest, Limits, RequestError, check_generate
from multi_task_kobart.tasks import TASKS


def deployments(args: ServeArgs) -> dict:
    from ray.serve._private.build_app import build_app as serve_build_app

    built = serve_build_app(build_app(args), name="test")
    return {deployment.name: deployment for deployment in built.deployments}


def test_fanout_has_an_encoder_and_one_decoder_deployment_per_task():
    built = deployments(ServeArgs(decoder_overrides={"qa_generation": {"num_cpus": 0.5, "num_replicas": 2}}))
    assert set(built) == {"Ingress", "Encoder", *(f"Decoder_{task}" for task in TASKS)}
    qa, style = built["Decoder_qa_generation"], built["Decoder_style_transfer"]
    assert qa.ray_actor_options["num_cpus"] == 0.5 and qa.num_replicas == 2
    assert style.ray_actor_options["num_cpus"] == 0.15 and style.num_replicas == 1
    cpus = sum(d.ray_actor_options["num_cpus"] * d.num_replicas for d in built.values())
    assert cpus == pytest.approx(0.1 + 0.2 + 3 * 0.15 + 2 * 0.5)
    for deployment in built.values():  # every hop can hold more than one batch
        config = deployment._deployment_config
        assert config.max_ongoing_requests > 16 and config.max_queued_requests > 0
        assert config.max_surge_percent == 100


def test_colocated_is_one_model_deployment():
    built = deployments(ServeArgs(topology="colocated"))
    assert set(built) == {"Ingress", "Colocated"}


def test_autoscaling_config_reaches_the_decoders():
    scaling = {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 8}
    built = deployments(ServeArgs(decoder={"autoscaling_config": scaling}))
    config = built["Decoder_style_transfer"]._deployment_config.autoscaling_config
    assert (config.min_replicas, config.max_replicas) == (1, 4)


@pytest.mark.parametrize(("args", "message"), [
    ({"encoder": {"max_batch_size": 16, "max_ongoing_requests": 16}}, "batches can never fill"),
    ({"ingress": {"max_ongoing_requests": 4}}, "below the encoder's max_batch_size"),
    ({"topology": "mesh"}, "'fanout' or 'colocated'"),
    ({"tasks": ["poetry"]}, "Unknown task 'poetry'"),
    ({"decoder_overrides": {"qa_generation": {"num_cpus": -1}}, "tasks": ["style_transfer"]}, "not in tasks"),
    ({"decoder_overrides": {"qa_generation": {"cpus": 1}}}, "Extra inputs are not permitted"),
    ({"rollout_retry_s": 120}, "would be killed while its requests still wait"),
    ({"modle": "x"}, "Extra inputs are not permitted"),
])
def test_bad_args_are_refused_with_a_reason(args, message):
    with pytest.raises(ValidationError, match=message):
        ServeArgs.model_validate(args)


def test_request_arguments_override_the_shared_defaults_only_where_given():
    request = GenerateRequest(task="style_transfer", text="빨리 와", num_beams=4, do_sample=True, top_p=0.9)
    kwargs = request.generate_kwargs()
    assert kwargs == {"max_new_tokens": 48, "num_beams": 4, "no_repeat_ngram_size": 3, "repetition_penalty": 1.2,
                      "do_sample": True, "top_p": 0.9}


def test_a_default_over_a_limit_comes_down_to_it_and_only_a_sent_value_is_refused():
    limits = Limits(max_new_tokens=16, max_num_beams=2)
    request = GenerateRequest(task="style_transfer", text="빨리 와")
    check_generate(request, limits)  # the default of 48 new tokens would be over the limit
    assert request.generate_kwargs(limits)["max_new_tokens"] == 16
    with pytest.raises(RequestError, match="max_new_tokens=20 is over the limit of 16"):
        check_generate(GenerateRequest(task="style_transfer", text="빨리 와", max_new_tokens=20), limits)
