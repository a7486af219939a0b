# The demo zoo's own files (checkpoints, an old-opset ONNX, calibration sets), made from fixed seeds.


rule demo_asset:
    output:
        asset=paths.DEMO,
    params:
        **spec(lambda wc: {}),
    log:
        paths.log("demo", "{asset}"),
    shell:
        stage("demo")
