# Evaluates an experiment.nix for `nw run`: every top-level attribute must be a step (or a set or
# list of steps, named `group.member`); anything else is reported by name so `nw` can refuse it.
{ json }:
let
  args = builtins.fromJSON json;
  guard = import ./guard.nix { inherit (args) allowUnpinned; };
  experiment = guard.import (/. + args.file);
  isStep = v: builtins.isAttrs v && v ? __nixworkflow;
  isDrv = v: builtins.isAttrs v && (v.type or null) == "derivation";
  article = t: if builtins.elem (builtins.substring 0 1 t) [ "a" "i" ] then "an ${t}" else "a ${t}";
  kind = v: if isDrv v then "a derivation" else if builtins.isAttrs v && v ? __nixworkflowStatic then "a static input"
    else if builtins.isFunction v then "a function" else article (builtins.typeOf v);
  allSteps = vs: vs != [ ] && builtins.all isStep vs;
  describe = n: v:
    let pos = builtins.unsafeGetAttrPos n experiment; in
    if isStep v then { step = v.__nixworkflow; inherit pos; }
    else if builtins.isAttrs v && !(isDrv v) && allSteps (builtins.attrValues v) then
      { group = builtins.mapAttrs (_: s: s.__nixworkflow) v; inherit pos; }
    else if builtins.isList v && allSteps v then
      { group = builtins.listToAttrs (builtins.genList (i: { name = toString i; value = (builtins.elemAt v i).__nixworkflow; }) (builtins.length v)); inherit pos; }
    else { notStep = kind v; inherit pos; };
in
# A list, not a set: toJSON would print a set with an `outPath` attribute as that string.
if isStep experiment then { notAttrs = "single step (return a set: { name = output ...; })"; }
else if builtins.isAttrs experiment then
  { attrs = map (n: describe n experiment.${n} // { name = n; }) (builtins.attrNames experiment); }
else { notAttrs = builtins.typeOf experiment; }
