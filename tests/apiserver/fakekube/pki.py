"""The certificates and kubeconfigs a test run uses (made with openssl at start)."""
import os
import subprocess

def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

def make_pki(d):
    ca, key = os.path.join(d, "ca.crt"), os.path.join(d, "ca.key")
    if not os.path.exists(ca):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=kubetrail-test-ca",
                "-keyout", key, "-out", ca)
    for name, subj, ext in (("server", "/CN=kube-apiserver", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
                            ("client", "/O=system:masters/CN=kubetrail-test", "extendedKeyUsage=clientAuth")):
        crt = os.path.join(d, name + ".crt")
        if os.path.exists(crt):
            continue
        k, csr, extf = os.path.join(d, name + ".key"), os.path.join(d, name + ".csr"), os.path.join(d, name + ".ext")
        with open(extf, "w") as f:
            f.write(ext + "\n")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subj, "-keyout", k, "-out", csr)
        openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", key, "-CAcreateserial", "-days", "2",
                "-extfile", extf, "-out", crt)

def write_kubeconfigs(d, port, token):
    server = "https://127.0.0.1:%d" % port
    def kc(user):
        return ("apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: %s\n"
                "    certificate-authority: %s\nusers:\n- name: u\n  user:\n%s"
                "contexts:\n- name: test\n  context:\n    cluster: test\n    user: u\n    namespace: default\n"
                "current-context: test\n") % (server, os.path.join(d, "ca.crt"), user)
    with open(os.path.join(d, "kubeconfig-token"), "w") as f:
        f.write(kc("    token: %s\n" % token))
    with open(os.path.join(d, "kubeconfig-cert"), "w") as f:
        f.write(kc("    client-certificate: %s\n    client-key: %s\n" % (
            os.path.join(d, "client.crt"), os.path.join(d, "client.key"))))
    with open(os.path.join(d, "port"), "w") as f:
        f.write(str(port))
