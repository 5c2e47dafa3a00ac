# node-gyp entry point (npm rebuild, electron-rebuild, prebuild tools). It holds no compile
# rules: its one action hands over to scripts/build-native.mjs, which drives CMakeLists.txt
# through cmake-js, so CMake stays the single source of truth. Backend choices come from the
# same environment variables (HOVLE_BACKENDS, HOVLE_CPU, HOVLE_CUDA_ARCHITECTURES).
{
  "targets": [
    {
      "target_name": "hovle",
      "type": "none",
      "actions": [
        {
          "action_name": "cmake_build",
          "inputs": [],
          "outputs": ["<(module_root_dir)/build/Release/hovle.node"],
          "action": [
            "node",
            "<(module_root_dir)/scripts/build-native.mjs",
            "--from-node-gyp",
            "--arch",
            "<(target_arch)"
          ]
        }
      ]
    }
  ]
}
