// Java 17 SunPKCS11 against the module under test. Run by conformance/java.sh:
//   java -cp DIR P11Check CONFIG PIN
// The token already holds, made by keytool: an RSA key pair "rsa" and an EC
// P-256 key pair "ec" (each with its self-signed certificate) and an AES-256
// key "aes"; made by pkcs11-tool, with certificates attached under the same
// CKA_ID: "p11tool-rsa" and "p11tool-ec". Every token operation is checked against a software provider
// (SunJCE, SunRsaSign, SunEC). Prints PASS/FAIL/SKIP lines and a summary;
// exits 1 if anything failed.
import java.nio.charset.StandardCharsets;
import java.security.*;
import java.security.cert.Certificate;
import java.security.spec.MGF1ParameterSpec;
import java.security.spec.PSSParameterSpec;
import java.util.*;
import javax.crypto.*;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.SecretKeySpec;

public class P11Check {
    static int passed, failed;

    static void pass(String what) { passed++; System.out.println("PASS  " + what); }
    static void fail(String what, Throwable t) {
        failed++;
        System.out.println("FAIL  " + what);
        if (t != null) {
            System.out.println("      " + t);
            for (Throwable c = t.getCause(); c != null; c = c.getCause()) System.out.println("      caused by " + c);
        }
    }
    static void check(String what, boolean ok) { if (ok) pass(what); else fail(what, null); }

    interface Step { void run() throws Exception; }
    static void step(String what, Step s) {
        try { s.run(); } catch (Throwable t) { fail(what, t); }
    }

    public static void main(String[] args) throws Exception {
        String cfg = args[0];
        char[] pin = args[1].toCharArray();
        Provider p = Security.getProvider("SunPKCS11").configure(cfg);
        Security.addProvider(p);
        System.out.println("provider: " + p.getName() + " " + p.getInfo());

        KeyStore ks = KeyStore.getInstance("PKCS11", p);
        ks.load(null, pin);
        List<String> aliases = Collections.list(ks.aliases());
        Collections.sort(aliases);
        System.out.println("aliases: " + aliases);
        check("keystore lists rsa, ec and aes", aliases.containsAll(List.of("rsa", "ec", "aes")));
        check("keystore lists p11tool-rsa and p11tool-ec", aliases.containsAll(List.of("p11tool-rsa", "p11tool-ec")));

        byte[] data = new byte[3000];
        new SecureRandom().nextBytes(data);
        byte[] other = data.clone();
        other[0] ^= 1;

        // ---- AES-256-GCM with AAD --------------------------------------
        step("AES/GCM/NoPadding with the token AES key", () -> {
            Key aes = ks.getKey("aes", pin);
            check("token AES key is a 256-bit AES key",
                  "AES".equals(aes.getAlgorithm()) && (aes.getEncoded() == null || aes.getEncoded().length == 32));
            gcm(p, aes, "token key");
        });
        step("AES/GCM/NoPadding with a known key, cross-checked by SunJCE", () -> {
            byte[] raw = new byte[32];
            new SecureRandom().nextBytes(raw);
            SecretKeySpec spec = new SecretKeySpec(raw, "AES");
            byte[] iv = new byte[12];
            new SecureRandom().nextBytes(iv);
            byte[] aad = "table=orders;chunk=7".getBytes(StandardCharsets.UTF_8);
            Cipher t = Cipher.getInstance("AES/GCM/NoPadding", p);
            t.init(Cipher.ENCRYPT_MODE, spec, new GCMParameterSpec(128, iv));
            t.updateAAD(aad);
            byte[] ct = t.doFinal(data);
            check("token cipher is SunPKCS11's", t.getProvider() == p);
            Cipher s = Cipher.getInstance("AES/GCM/NoPadding", "SunJCE");
            s.init(Cipher.ENCRYPT_MODE, spec, new GCMParameterSpec(128, iv));
            s.updateAAD(aad);
            check("token AES-GCM ciphertext+tag equals SunJCE's", Arrays.equals(ct, s.doFinal(data)));
            s.init(Cipher.DECRYPT_MODE, spec, new GCMParameterSpec(128, iv));
            s.updateAAD(aad);
            check("SunJCE decrypts the token's ciphertext", Arrays.equals(s.doFinal(ct), data));
        });

        // ---- signatures ----------------------------------------------------
        sign(p, ks, pin, "rsa", "SHA256withRSA", null, "SunRsaSign", data, other);
        sign(p, ks, pin, "ec", "SHA256withECDSA", null, "SunEC", data, other);
        // Key pairs made by pkcs11-tool with a certificate attached by
        // `pkcs11-tool --write-object --type cert --id` (java.sh).
        sign(p, ks, pin, "p11tool-rsa", "SHA256withRSA", null, "SunRsaSign", data, other);
        sign(p, ks, pin, "p11tool-ec", "SHA256withECDSA", null, "SunEC", data, other);
        if (p.getService("Signature", "RSASSA-PSS") != null) {
            PSSParameterSpec pss = new PSSParameterSpec("SHA-256", "MGF1", MGF1ParameterSpec.SHA256, 32, 1);
            sign(p, ks, pin, "p11tool-rsa", "RSASSA-PSS", pss, "SunRsaSign", data, other);
        } else {
            System.out.println("SKIP  RSASSA-PSS (not offered by SunPKCS11 for this token)");
        }
        if (p.getService("Signature", "SHA256withRSASSA-PSS") != null) {
            PSSParameterSpec pss = new PSSParameterSpec("SHA-256", "MGF1", MGF1ParameterSpec.SHA256, 32, 1);
            // Software verifies with the generic name and the same parameters.
            step("SHA256withRSASSA-PSS", () -> {
                PrivateKey k = (PrivateKey) ks.getKey("p11tool-rsa", pin);
                Signature t = Signature.getInstance("SHA256withRSASSA-PSS", p);
                t.setParameter(pss);
                t.initSign(k);
                t.update(data);
                byte[] sig = t.sign();
                Signature v = Signature.getInstance("RSASSA-PSS", "SunRsaSign");
                v.setParameter(pss);
                v.initVerify(ks.getCertificate("p11tool-rsa").getPublicKey());
                v.update(data);
                check("SHA256withRSASSA-PSS signature verified by SunRsaSign", v.verify(sig));
            });
        }

        // ---- RSA decryption ------------------------------------------------
        step("RSA/ECB/PKCS1Padding decryption on the token", () -> {
            PrivateKey k = (PrivateKey) ks.getKey("p11tool-rsa", pin);
            byte[] msg = Arrays.copyOf(data, 100);
            Cipher s = Cipher.getInstance("RSA/ECB/PKCS1Padding", "SunJCE");
            s.init(Cipher.ENCRYPT_MODE, ks.getCertificate("p11tool-rsa").getPublicKey());
            byte[] ct = s.doFinal(msg);
            Cipher t = Cipher.getInstance("RSA/ECB/PKCS1Padding", p);
            t.init(Cipher.DECRYPT_MODE, k);
            check("token decrypts SunJCE's RSA PKCS#1 v1.5 ciphertext", Arrays.equals(t.doFinal(ct), msg));
        });

        // ---- key pairs generated by Java itself (session objects) -----------
        sessionPair(p, "EC", new java.security.spec.ECGenParameterSpec("secp256r1"), "SHA256withECDSA", null, "SunEC", data);
        sessionPair(p, "RSA", new java.security.spec.RSAKeyGenParameterSpec(2048, java.math.BigInteger.valueOf(65537)),
                    "SHA256withRSA", null, "SunRsaSign", data);
        if (p.getService("Signature", "RSASSA-PSS") != null) {
            sessionPair(p, "RSA", new java.security.spec.RSAKeyGenParameterSpec(2048, java.math.BigInteger.valueOf(65537)),
                        "RSASSA-PSS", new PSSParameterSpec("SHA-256", "MGF1", MGF1ParameterSpec.SHA256, 32, 1), "SunRsaSign", data);
        }

        System.out.println();
        System.out.println("P11Check: " + passed + " passed, " + failed + " failed");
        System.exit(failed == 0 ? 0 : 1);
    }

    static void sessionPair(Provider p, String kalg, java.security.spec.AlgorithmParameterSpec gen, String alg,
                            PSSParameterSpec params, String soft, byte[] data) {
        String what = "session " + kalg + " key pair from KeyPairGenerator(SunPKCS11), " + alg;
        step(what, () -> {
            KeyPairGenerator g = KeyPairGenerator.getInstance(kalg, p);
            g.initialize(gen);
            KeyPair kp = g.generateKeyPair();
            Signature t = Signature.getInstance(alg, p);
            if (params != null) t.setParameter(params);
            t.initSign(kp.getPrivate());
            t.update(data);
            byte[] sig = t.sign();
            PublicKey pub = KeyFactory.getInstance(kalg, soft)
                .generatePublic(new java.security.spec.X509EncodedKeySpec(kp.getPublic().getEncoded()));
            Signature v = Signature.getInstance(alg, soft);
            if (params != null) v.setParameter(params);
            v.initVerify(pub);
            v.update(data);
            check(what + ": token signature verified by " + soft, v.verify(sig));
        });
    }

    static void gcm(Provider p, Key key, String what) throws Exception {
        byte[] iv = new byte[12];
        new SecureRandom().nextBytes(iv);
        byte[] aad = "header: p11kms java".getBytes(StandardCharsets.UTF_8);
        byte[] pt = new byte[1000];
        new SecureRandom().nextBytes(pt);
        Cipher c = Cipher.getInstance("AES/GCM/NoPadding", p);
        c.init(Cipher.ENCRYPT_MODE, key, new GCMParameterSpec(128, iv));
        c.updateAAD(aad);
        byte[] ct = c.doFinal(pt);
        check("AES-GCM (" + what + "): ciphertext is plaintext + 16-byte tag", ct.length == pt.length + 16);
        c.init(Cipher.DECRYPT_MODE, key, new GCMParameterSpec(128, iv));
        c.updateAAD(aad);
        check("AES-GCM (" + what + "): decrypts to the plaintext", Arrays.equals(c.doFinal(ct), pt));
        byte[] bad = ct.clone();
        bad[bad.length - 1] ^= 1;
        rejects("AES-GCM (" + what + "): tampered tag rejected (AEADBadTagException)", p, key, iv, aad, bad);
        byte[] otherAad = "header: p11kms javA".getBytes(StandardCharsets.UTF_8);
        rejects("AES-GCM (" + what + "): other AAD rejected (AEADBadTagException)", p, key, iv, otherAad, ct);
    }

    static void rejects(String what, Provider p, Key key, byte[] iv, byte[] aad, byte[] ct) {
        try {
            Cipher c = Cipher.getInstance("AES/GCM/NoPadding", p);
            c.init(Cipher.DECRYPT_MODE, key, new GCMParameterSpec(128, iv));
            c.updateAAD(aad);
            c.doFinal(ct);
            fail(what + " -- decryption succeeded", null);
        } catch (AEADBadTagException e) {
            pass(what);
        } catch (Throwable t) {
            fail(what + " -- wrong exception", t);
        }
    }

    static void sign(Provider p, KeyStore ks, char[] pin, String alias, String alg,
                     PSSParameterSpec params, String soft, byte[] data, byte[] other) {
        step(alg + " with token key " + alias, () -> {
            PrivateKey k = (PrivateKey) ks.getKey(alias, pin);
            check(alg + ": token key " + alias + " found", k != null);
            Certificate cert = ks.getCertificate(alias);
            Signature t = Signature.getInstance(alg, p);
            if (params != null) t.setParameter(params);
            t.initSign(k);
            t.update(data);
            byte[] sig = t.sign();
            check(alg + ": signature made by SunPKCS11", t.getProvider() == p);
            Signature v = Signature.getInstance(alg, soft);
            if (params != null) v.setParameter(params);
            v.initVerify(cert.getPublicKey());
            v.update(data);
            check(alg + ": " + soft + " verifies it with the certificate's public key", v.verify(sig));
            v.initVerify(cert.getPublicKey());
            v.update(other);
            check(alg + ": " + soft + " rejects it for other data", !v.verify(sig));
            Signature tv = Signature.getInstance(alg, p);
            if (params != null) tv.setParameter(params);
            tv.initVerify(cert.getPublicKey());
            tv.update(data);
            check(alg + ": the token verifies it too", tv.verify(sig));
        });
    }
}
