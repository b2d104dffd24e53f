{
  description = "msa-blackwell: MiniMax Sparse Attention kernels for SM120/SM121 Blackwell GPUs";

  inputs = {
    kernel-builder.url = "github:huggingface/kernels";
  };

  outputs =
    {
      self,
      kernel-builder,
    }:
    kernel-builder.lib.genKernelFlakeOutputs {
      inherit self;
      path = ./.;
      # Test-only Python packages tests/ imports (test shells and ci-test, not the Hub build).
      pythonCheckInputs = pkgs: with pkgs; [ hypothesis pyyaml ];
    };
}
