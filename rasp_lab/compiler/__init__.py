"""The RASP-to-transformer compiler: one pass per module, called in order by
`rasp_lab.compiling.compile_rasp_to_model`."""
