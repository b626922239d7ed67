# Ferry's Python bootstrap: the helpers of Octopus Deploy's Calamari Python bootstrap
# (Configuration.py: get_octopusvariable, set_octopusvariable, createartifact, updateprogress,
# failstep, printverbose, printhighlight, printwait, printwarning, the octopusvariables dict),
# then the user's script, run with runpy.run_path and those names in its globals.
#
# The runner starts it as:   python3 -u .ferry-bootstrap.py script.py
# in the step's working directory, with FERRY_VARIABLES_FILE naming a private file (mode 0600) of
# NUL-terminated name/value pairs (UTF-8): name NUL value NUL name NUL value NUL ...
# Variable values are read as data; nothing from a variable is evaluated.

import base64
import binascii
import os
import os.path
import sys
from runpy import run_path


def encode(value):
    return base64.b64encode(value.encode("utf-8")).decode("utf-8")


def decode(value):
    return base64.b64decode(value).decode("utf-8")


def _ferry_load_variables():
    path = os.environ.pop("FERRY_VARIABLES_FILE", "")
    variables = {}
    if not path:
        return variables
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        print("Ferry bootstrap: could not read the variables: {0}".format(e), file=sys.stderr)
        return variables
    # Deleted once read, so that nothing the script archives or uploads carries the values.
    try:
        os.remove(path)
    except OSError:
        pass
    parts = data.split(b"\0")
    for i in range(0, len(parts) - 1, 2):
        name = parts[i].decode("utf-8", "replace")
        if name:
            variables[name] = parts[i + 1].decode("utf-8", "replace")
    return variables


octopusvariables = _ferry_load_variables()


def get_octopusvariable(key):
    return octopusvariables[key]


def set_octopusvariable(name, value, sensitive=False):
    octopusvariables[name] = value
    name = encode(name)
    value = encode(value)
    if sensitive:
        print("##octopus[setVariable name='{0}' value='{1}' sensitive='{2}']".format(name, value, encode("True")))
    else:
        print("##octopus[setVariable name='{0}' value='{1}']".format(name, value))


def createartifact(path, fileName=None):
    if fileName is None:
        fileName = os.path.basename(path)
    serviceFileName = encode(fileName)
    length = str(os.stat(path).st_size) if os.path.isfile(path) else "0"
    length = encode(length)
    path = os.path.abspath(path)
    servicepath = encode(path)
    print("##octopus[stdout-verbose]")
    print("Artifact {0} will be collected from {1} after this step completes".format(fileName, path))
    print("##octopus[stdout-default]")
    print("##octopus[createArtifact path='{0}' name='{1}' length='{2}']".format(servicepath, serviceFileName, length))


def updateprogress(progress, message=""):
    print("##octopus[progress percentage='{0}' message='{1}']".format(encode(str(progress)), encode(message)))


def failstep(message=None):
    if message is not None:
        print("##octopus[resultMessage message='{}']".format(encode(message)))
    sys.exit(-1)


def _ferry_print_as(level, message):
    print("##octopus[stdout-{0}]".format(level))
    print(message)
    print("##octopus[stdout-default]")


def printverbose(message):
    _ferry_print_as("verbose", message)


def printhighlight(message):
    _ferry_print_as("highlight", message)


def printwait(message):
    _ferry_print_as("wait", message)


def printwarning(message):
    _ferry_print_as("warning", message)


def _ferry_main():
    if len(sys.argv) < 2:
        print("Ferry bootstrap: no script to run", file=sys.stderr)
        sys.exit(2)
    script = os.path.abspath(sys.argv[1])
    sys.argv = [script] + sys.argv[2:]
    printverbose(sys.version)
    # The names a Calamari script finds in its globals (Calamari runs its configuration module
    # and passes all of that module's globals, imports included, to the script).
    helpers = {
        "base64": base64,
        "binascii": binascii,
        "os": os,
        "sys": sys,
        "encode": encode,
        "decode": decode,
        "octopusvariables": octopusvariables,
        "get_octopusvariable": get_octopusvariable,
        "set_octopusvariable": set_octopusvariable,
        "createartifact": createartifact,
        "updateprogress": updateprogress,
        "failstep": failstep,
        "printverbose": printverbose,
        "printhighlight": printhighlight,
        "printwait": printwait,
        "printwarning": printwarning,
    }
    # As Calamari: run_path without run_name, so the script's __name__ is "<run_path>".
    run_path(script, helpers)


_ferry_main()
