# The showcase's five tools as a tiny local package set: one derivation per script in ../tools,
# built offline by /bin/sh (no nixpkgs needed). Each installs its script as $out/bin/<name>.
# The scripts start with `#!/usr/bin/env python3`: they are mock-ups that use the host's Python.
{ system ? builtins.currentSystem }:
let
  tool = name: builtins.derivation {
    inherit name system;
    builder = "/bin/sh";
    script = ../tools + "/${name}";
    args = [ "-c" ''
      PATH=/usr/bin:/bin
      mkdir -p "$out/bin"
      cp "$script" "$out/bin/${name}"
      chmod 0555 "$out/bin/${name}"
    '' ];
  };
in
{
  build-data = tool "build-data";
  train = tool "train";
  inference = tool "inference";
  evaluate = tool "evaluate";
  compare = tool "compare";
}
