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
# A step may say what its Slurm job needs, `resources = { gpus = 1; mem = "64G"; time = "2:00:00"; cpus = 8; };`
# (the keys of `slurm:` in nixworkflow.yaml; `nw` checks the values): used by `nw run --slurm` only, and kept out
# of the step's token and key, so changing them re-runs nothing.
# A long step may say `resumable = true;`: it gets a `$state` directory that survives failures and
# interrupts, keyed by everything that determines its result (so a changed input starts afresh).
#
# A step with `checkpoints = true;` publishes named snapshots while it runs (docs/resume.md); another step
# uses one with `model.checkpoint "epoch-2"` (the same as Python's `model.checkpoint("epoch-2")`; a function,
# because a set's attribute names must be known when it is built, and checkpoint names are not), or with
# `checkpoint model "epoch-2"`. `model.checkpoint { name = "epoch-2"; hash = "…"; }` locks it to the object
# `nw pin model --checkpoint epoch-2` printed: served as is, and `model` is then not needed.
#
# A step evaluates to a set whose `outPath` is a token: interpolating a step into another
# step's command copies the token, which is how `nw` finds the dependency (Python maps each
# token to its step and computes the recipe key, so a step keys the same as in experiment.py). The token carries
# the string context of a store file describing the step (written when a command interpolates it), so a step
# bound in a `let`, which no top-level attribute holds, reaches `nw` through the commands using it.
# Tools interpolated into a command (`${train}`) are in the command's string context: `nw`
# realises them before running and records their `.drv` paths as the step's environment.
let
  inherit (builtins) isString isAttrs isList isBool attrNames getContext hashString toJSON
    unsafeDiscardStringContext concatStringsSep filter stringLength match;

  fail = msg: throw "nixworkflow: ${msg}";
  outputArgs = [ "cmd" "name" "env" "hash" "pure" "sandbox" "network" "gpu" "allowEmpty" "resumable" "checkpoints"
    "resources" ];
  staticArgs = [ "hash" "path" "name" ];

  checkArgs = fn: allowed: a:
    let unknown = filter (n: !(builtins.elem n allowed)) (attrNames a); in
    if unknown == [ ] then a
    else fail "${fn} got unknown argument(s) ${concatStringsSep ", " unknown}; it takes ${concatStringsSep ", " allowed}";

  isHash = h: isString h && match "[0-9abcdfghijklmnpqrsvwxyz]{52}" h != null;
  flag = a: n: default: let v = a.${n} or default; in if isBool v then v else fail "output: ${n} must be true or false";
  # A step's description in the Nix store (lib.nix writes it when another step's command interpolates the step).
  stepFileName = "nixworkflow-step.json";
  isStepFile = p: match ".*-${stepFileName}" p != null;
  # A value without string context: resources are nw's, not Nix's, and the step file may refer to no build output.
  plain = v: builtins.fromJSON (unsafeDiscardStringContext (toJSON v));
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
        context = filter (p: !(isStepFile p)) (attrNames (getContext cmd));
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
      # Beside the record, not in it: resources are not part of the step's token (nor, in nw, of its key).
      # `nw` checks them (by nixworkflow.yaml's rules, naming the step); here only what JSON cannot carry.
      resources = let r = a.resources or null; in
        if builtins.isFunction r then fail "output: resources must be a set, not a function: resources = { gpus = 1; };"
        else r;
    in
    if hash != null && !(isHash hash) then fail "output: hash \"${toString hash}\" is not a 52-character Nix base32 SHA-256"
    else if name != null && !(isString name) then fail "output: name must be a string"
    # The options are checked here, when the step is created, not when nw prints it: an error then has the
    # position of the `output` call in the user's file (Nix reports none for a throw while printing).
    else builtins.deepSeq [ record resources ] (let
      # The steps this command interpolates, as the files describing them (their outPaths' string context): how nw
      # finds a step bound in a `let` that no top-level attribute holds.
      steps = filter isStepFile (attrNames (getContext cmd));
      described = record // { inherit token steps; resources = plain resources; };
      # (written only when a command interpolates this step: outPath is lazy)
      file = builtins.toFile stepFileName (toJSON (described // { steps = map builtins.storePath steps; }));
      step = { outPath = token + builtins.substring 0 0 file; __nixworkflow = described;
        checkpoint = checkpoint step; };
    in step);

  # A checkpoint reference names its producer by the producer's token (which it ends with); the name
  # is length-prefixed and the pin is `none` or a hash, so `nw` reads all three back from any command.
  checkpoint = step: arg:
    let
      a = if isString arg then { name = arg; } else if isAttrs arg then checkArgs "checkpoint" [ "name" "hash" ] arg
        else fail "checkpoint takes a name or { name; hash ? null; }";
      name = if isString (a.name or null) && a.name != "" then a.name else fail "checkpoint: name must be a non-empty string";
      hash = a.hash or null;
      r = step.__nixworkflow or (fail "checkpoint: its first argument must be a step (output ...)");
      pin = if hash == null then "none" else if isHash hash then hash
        else fail "checkpoint: hash \"${toString hash}\" is not a 52-character Nix base32 SHA-256";
    in
    if hash == null && (!r.checkpoints || r.hash != null) then
      fail ("checkpoint \"${name}\" of a step that publishes none: declare the step with checkpoints = true; "
        + "(a step pinned with hash publishes none; pin the checkpoint itself with { name; hash; })")
    else { outPath = "/nix-workflow-checkpoint/${pin}/${toString (stringLength name)}:${name}${step.outPath}"; };

  # A static input is named by its content hash; the path (when given) travels inside the token,
  # length-prefixed, so a static bound in a `let` still reaches `nw` through the commands using it. So does
  # where the `static` call is (`@` and a length-prefixed FILE:LINE, before the path), so that an error about
  # the file (missing, changed) names the static's own line, not that of a step using it.
  static = arg:
    let
      a = checkArgs "static" staticArgs (if isAttrs arg then arg else fail "static takes { hash; path ? null; name ? null; }");
      hash = if isHash (a.hash or null) then a.hash
        else fail "static: hash must be the 52-character Nix base32 SHA-256 of the file (`nw hash FILE` prints it)";
      path = if a.path or null == null then null else toString a.path;
      pos = builtins.unsafeGetAttrPos "hash" a;
      at = if pos == null then "" else let w = "${pos.file}:${toString pos.line}"; in "@${toString (stringLength w)}:${w}";
      suffix = if path == null then "" else "${at}/${toString (stringLength path)}:${path}";
    in
    { outPath = "/nix-workflow-static/${hash}${suffix}"; __nixworkflowStatic = { inherit hash path; }; };
in
{
  inherit output static checkpoint;
}
