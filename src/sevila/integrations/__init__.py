"""Where SeViLA meets other tools: transformers' `AutoConfig` (`hf_config`) and the lmms-eval harness
(`lmms_eval`, optional: ``pip install 'sevila[lmms-eval]'``). Nothing in the library imports these modules
except `sevila`'s own registration hook (`hf_config.register_on_import`)."""
