{
  "targets": [
    {
      "target_name": "runcts_native",
      "sources": [
        "src/main.cc",
        "src/process.cc",
        "src/fd.cc",
        "src/mount.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags": ["-Wall", "-Wextra"],
      "cflags_cc": ["-Wall", "-Wextra"]
    }
  ]
}
