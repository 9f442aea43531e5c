"""nurcrm_pack: a folder's files packed on the controller into a tar that is the same bytes from any clone.

The app's code, the bundle's packages and the doctor ship to the hosts as one archive each: copied once and
unpacked by `unarchive`, which compares what is unpacked with it (a rerun changes nothing; a file edited on a host
is put back). The archive names the app's release (its checksum), so it must not depend on the clone: members in
name order, times at 0, owner root, modes 0755 (directories and executables) or 0644, no user or group names.
"""

import fnmatch
import hashlib
import io
import os
import tarfile

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: nurcrm_pack
short_description: Pack files into a tar that depends on their contents only
description:
  - Packs I(paths) of I(src) into I(dest), skipping any member whose name matches one of I(exclude).
  - The archive depends on the files' names, contents and executable bits only; it is written only when those
    differ from what I(dest) holds.
options:
  src: {description: The folder the members' names are relative to., type: path, required: true}
  dest: {description: The archive to write (its folder is made)., type: path, required: true}
  paths: {description: "Files or folders under I(src), folders packed whole.", type: list, elements: str,
          default: ["."]}
  exclude: {description: Shell patterns matched against each member's base name., type: list, elements: str,
            default: []}
"""

EXAMPLES = r"""
- name: Pack the app's code
  nurcrm_pack:
    src: "{{ app_source_dir }}"
    dest: "{{ __app_archive }}"
    exclude: [__pycache__, "*.pyc", tests]
  delegate_to: localhost
"""

RETURN = r"""
sha256: {description: The archive's SHA-256 (hex)., returned: always, type: str}
"""


def members(src, paths, exclude):
    """(path on disk, name in the archive) of every member, each folder before what it holds. As GNU tar's
    `tar -C src PATH...`: a folder brings everything under it, and the names under `.` start with ./"""

    def skipped(name):
        return any(fnmatch.fnmatch(os.path.basename(name), pattern) for pattern in exclude)

    names = {}
    for path in paths:
        top = os.path.normpath(path)
        full = os.path.join(src, top)
        if not os.path.lexists(full):
            raise FileNotFoundError(f"{full}: no such file or folder to pack")
        if top != "." and skipped(top):
            continue
        names[top] = full
        if os.path.isdir(full) and not os.path.islink(full):
            for root, dirs, files in os.walk(full):
                dirs[:] = [d for d in dirs if not skipped(d)]
                for entry in dirs + [f for f in files if not skipped(f)]:
                    name = os.path.normpath(os.path.join(os.path.relpath(root, src), entry))
                    names["./" + name if top == "." else name] = os.path.join(root, entry)
    return sorted(((full, name) for name, full in names.items()), key=lambda member: member[1].split("/"))


def pack(src, paths=(".",), exclude=()):
    """The archive's bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for full, name in members(src, list(paths), list(exclude)):
            info = tar.gettarinfo(full, arcname=name)
            executable = info.isdir() or info.mode & 0o111
            info.mode = 0o755 if executable else 0o644
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if info.isreg():
                with open(full, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buffer.getvalue()


def holds(dest, data):
    """Whether `dest` holds exactly `data`."""
    try:
        with open(dest, "rb") as f:
            return f.read() == data
    except FileNotFoundError:
        return False


def write(dest, data):
    """Write `data` to `dest`, through a temporary file."""
    os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    with open(dest + ".part", "wb") as f:
        f.write(data)
    os.replace(dest + ".part", dest)


def main():
    module = AnsibleModule(
        argument_spec={
            "src": {"type": "path", "required": True},
            "dest": {"type": "path", "required": True},
            "paths": {"type": "list", "elements": "str", "default": ["."]},
            "exclude": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    params = module.params
    try:
        data = pack(params["src"], params["paths"], params["exclude"])
    except OSError as error:
        module.fail_json(msg=f"cannot pack {params['src']}: {error}")
    changed = not holds(params["dest"], data)
    if changed and not module.check_mode:
        write(params["dest"], data)
    module.exit_json(changed=changed, sha256=hashlib.sha256(data).hexdigest(), dest=params["dest"])


if __name__ == "__main__":
    main()
