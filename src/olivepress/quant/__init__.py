"""Weight quantization on a CPU, llm-awq style: searches return plain data, applying changes
the model, each step in a file of its own. The passes (passes/torch/{rtn,awq,gptq}.py) hold
only a `Config` and `run`; passes/torch/_quantizer.py strings these steps together.

- options.py: the options (the passes' `Config` fields); layout.py: what the AWQ and GPTQ
  checkpoint layouts can hold, each rule once;
- plan.py: which Linear gets which grid, which layout holds them all;
- calibration.py: calibration tokens and the layer-by-layer walk; activations.py: the inputs
  captured for one decoder layer; decoder.py: where the decoder layers and final norm are;
- rtn.py, awq.py (scale groups, scale and clip searches, folding), gptq.py (Hessian, the
  column sweep), clip.py, grid.py (the integer grid);
- packing.py, checkpoint.py, qconfig.py: the AutoAWQ / GPTQ checkpoint files and their
  `quantization_config`.
"""
