# The Nix side of nixworkflow: `output` declares a step, `static` a content-addressed input.
#
#   let inherit ((import <nixworkflow>).lib) output static; in
#   rec {
#     data  = static { path = ./data.csv; hash = "<nw hash data.csv>"; };
#     model = output "${train}/bin/train --data=${data} --out=$out";
#     score = output { cmd = "${evaluate}/bin/evaluate ${model}/model.json"; name = "score"; gpu = true; };
#     marker = output { cmd = "test -s ${score}/score.json"; allowEmpty = true; };
#   }
#
# A step that leaves `$out` empty fails unless it says `allowEmpty = true;` (an empty output is intended).
# A long step may say `resumable = true;`: it gets a `$state` directory that survives failures and
# interrupts, keyed by everything that determines its result (so a changed input starts afresh).
#
# A step evaluates to a set whose `outPath` is a token: interpolating a step into another
# step's command copies the token, which is how `nw` finds the dependency (Python maps each
# token to its step and computes the recipe key, so a step keys the same as in experiment.py).
# Tools interpolated into a command (`${train}`) are in the command's string context: `nw`
# realises them before running and records their `.drv` paths as the step's environment.
let
  inherit (builtins) isString isAttrs isList isBool attrNames getContext hashString toJSON
    unsafeDiscardStringContext concatStringsSep filter stringLength match;

  fail = msg: throw "nixworkflow: ${msg}";
  outputArgs = [ "cmd" "name" "env" "hash" "pure" "sandbox" "network" "gpu" "allowEmpty" "resumable" "checkpoints" ];
  staticArgs = [ "hash" "path" "name" ];

  checkArgs = fn: allowed: a:
    let unknown = filter (n: !(builtins.elem n allowed)) (attrNames a); in
    if unknown == [ ] then a
    else fail "${fn} got unknown argument(s) ${concatStringsSep ", " unknown}; it takes ${concatStringsSep ", " allowed}";

  isHash = h: isString h && match "[0-9abcdfghijklmnpqrsvwxyz]{52}" h != null;
  flag = a: n: default: let v = a.${n} or default; in if isBool v then v else fail "output: ${n} must be true or false";
  toList = v: if v == null then [ ] else if isList v then v else [ v ];
  envPath = d: unsafeDiscardStringContext (if isAttrs d && d ? drvPath then d.drvPath else toString d);

  output = arg:
    let
      a = checkArgs "output" outputArgs (if isString arg then { cmd = arg; } else if isAttrs arg then arg
        else fail "output takes a command string or { cmd; name ? null; env ? null; hash ? null; ... }");
      cmd = if isString (a.cmd or null) then a.cmd else fail "output: cmd must be a string";
      name = a.name or null;
      hash = a.hash or null;
      record = {
        cmd = unsafeDiscardStringContext cmd;
        context = attrNames (getContext cmd);
        env = map envPath (toList (a.env or null));
        inherit name hash;
        pure = flag a "pure" false;
        sandbox = flag a "sandbox" false;
        network = if a.network or null == null then null else flag a "network" true;
        gpu = flag a "gpu" false;
        allowEmpty = flag a "allowEmpty" false;
        resumable = flag a "resumable" false;
        checkpoints = flag a "checkpoints" false;
      };
      token = "/nix-workflow-step/" + hashString "sha256" (toJSON record) + "-"
        + (if name == null then "output" else name);
    in
    if hash != null && !(isHash hash) then fail "output: hash \"${toString hash}\" is not a 52-character Nix base32 SHA-256"
    else if name != null && !(isString name) then fail "output: name must be a string"
    else { outPath = token; __nixworkflow = record // { inherit token; }; };

  # A static input is named by its content hash; the path (when given) travels inside the token,
  # length-prefixed, so a static bound in a `let` still reaches `nw` through the commands using it.
  static = arg:
    let
      a = checkArgs "static" staticArgs (if isAttrs arg then arg else fail "static takes { hash; path ? null; name ? null; }");
      hash = if isHash (a.hash or null) then a.hash
        else fail "static: hash must be the 52-character Nix base32 SHA-256 of the file (`nw hash FILE` prints it)";
      path = if a.path or null == null then null else toString a.path;
      suffix = if path == null then "" else "/${toString (stringLength path)}:${path}";
    in
    { outPath = "/nix-workflow-static/${hash}${suffix}"; __nixworkflowStatic = { inherit hash path; }; };
in
{
  inherit output static;
}
