# `(import <nixworkflow>).lib` — `nw` puts this directory on the Nix search path as `nixworkflow`.
{
  lib = import ./lib.nix;
}
