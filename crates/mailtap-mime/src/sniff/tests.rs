//! One test per rule, from small synthetic byte strings built from each
//! format's published layout (no capture needed).

use super::sniff;

fn t(b: &[u8]) -> &'static str {
    sniff(b).unwrap_or("-")
}

/// `b` padded with `fill` to `n` bytes.
fn padded(b: &[u8], n: usize, fill: u8) -> Vec<u8> {
    let mut v = b.to_vec();
    v.resize(n, fill);
    v
}

/// A zip local file header for `name` (method 0 = stored, 8 = deflate)
/// followed by `data`.
fn zip_entry(name: &str, method: u16, data: &[u8]) -> Vec<u8> {
    let mut v = b"PK\x03\x04\x14\x00\x00\x00".to_vec();
    v.extend_from_slice(&method.to_le_bytes());
    v.extend_from_slice(&[0; 8]); // time, date, crc
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v.extend_from_slice(&(name.len() as u16).to_le_bytes());
    v.extend_from_slice(&0u16.to_le_bytes());
    v.extend_from_slice(name.as_bytes());
    v.extend_from_slice(data);
    v
}

fn zip_of(entries: &[(&str, u16, &[u8])]) -> Vec<u8> {
    entries
        .iter()
        .flat_map(|(n, m, d)| zip_entry(n, *m, d))
        .collect()
}

#[test]
fn zeek_baseline_types() {
    assert_eq!(t(b"Hello\r\n\r\n \r\n--\r\n"), "text/plain");
    assert_eq!(t(b"<html xmlns:v=\"urn\">"), "text/html");
    assert_eq!(t(b"Hello!\r\n"), "-");
    assert_eq!(t(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), "image/png");
    assert_eq!(
        t(b"Intro\n---\n x | 2 +\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n"),
        "text/x-diff"
    );
    assert_eq!(t(b"Received: from x\r\n"), "message/rfc822");
    assert_eq!(t(b"Return-Path: <a@b>\r\n"), "message/rfc822");
    assert_eq!(t(b"%PDF-1.4\n%\xe2\xe3"), "application/pdf");
    assert_eq!(t(b"\x1f\x8b\x08\x00\x00\x00\x00\x00"), "application/x-gzip");
    assert_eq!(t(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"), "image/jpeg");
    assert_eq!(t(b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a"), "-");
    assert_eq!(t(b""), "-");
}

#[test]
fn documents() {
    assert_eq!(t(b"%!PS-Adobe-3.0\n%%Title"), "application/postscript");
    assert_eq!(t(b"{\\rtf1\\ansi\\deff0"), "text/rtf");
    // OLE2 compound files, whatever application wrote them.
    assert_eq!(
        t(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\0\0\0\0\0\0\0\0"),
        "application/msword"
    );
}

#[test]
fn zip_family() {
    assert_eq!(t(b"PK\x03\x04\x14\x00\x00\x00\x08\x00"), "application/zip");
    assert_eq!(t(b"PK\x05\x06\0\0\0\0"), "application/zip");
    assert_eq!(
        t(&zip_of(&[("a.txt", 8, b"xx"), ("b.txt", 8, b"yy")])),
        "application/zip"
    );
    let docx = zip_of(&[
        ("[Content_Types].xml", 8, b"..."),
        ("_rels/.rels", 8, b"..."),
        ("word/document.xml", 8, b"..."),
    ]);
    assert_eq!(
        t(&docx),
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    );
    let pptx = zip_of(&[
        ("[Content_Types].xml", 8, b"..."),
        ("ppt/presentation.xml", 8, b"..."),
    ]);
    assert_eq!(
        t(&pptx),
        "application/vnd.openxmlformats-officedocument.presentationml.presentation"
    );
    let xlsx = zip_of(&[
        ("[Content_Types].xml", 8, b"..."),
        ("xl/workbook.xml", 8, b"..."),
    ]);
    assert_eq!(
        t(&xlsx),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    // A workbook whose package does not start with [Content_Types].xml
    // (openpyxl writes docProps first) is only a zip, as in Zeek.
    let xlsx2 = zip_of(&[
        ("docProps/app.xml", 8, b"..."),
        ("xl/workbook.xml", 8, b"..."),
    ]);
    assert_eq!(t(&xlsx2), "application/zip");
    // [Content_Types].xml but no known main part within the buffer.
    assert_eq!(
        t(&zip_of(&[("[Content_Types].xml", 8, b"...")])),
        "application/zip"
    );
    for kind in ["text", "spreadsheet", "presentation"] {
        let m = format!("application/vnd.oasis.opendocument.{kind}");
        let odf = zip_of(&[("mimetype", 0, m.as_bytes()), ("content.xml", 8, b"..")]);
        assert_eq!(t(&odf), m);
    }
    let epub = zip_of(&[("mimetype", 0, b"application/epub+zip")]);
    assert_eq!(t(&epub), "application/epub+zip");
    // An unknown or compressed `mimetype` entry says nothing.
    assert_eq!(
        t(&zip_of(&[("mimetype", 0, b"application/x-foo")])),
        "application/zip"
    );
    assert_eq!(
        t(&zip_of(&[("mimetype", 8, b"application/epub+zip")])),
        "application/zip"
    );
    assert_eq!(
        t(&zip_of(&[
            ("META-INF/", 0, b""),
            ("META-INF/MANIFEST.MF", 8, b"..")
        ])),
        "application/java-archive"
    );
    assert_eq!(
        t(&zip_of(&[("doc.kml", 8, b"...")])),
        "application/vnd.google-earth.kmz"
    );
}

#[test]
fn images() {
    assert_eq!(t(b"GIF89a\x60\x00\x40\x00"), "image/gif");
    assert_eq!(t(b"GIF87a\x60\x00\x40\x00"), "image/gif");
    let mut bmp = b"BM\x36\x48\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0".to_vec();
    assert_eq!(t(&bmp), "image/x-ms-bmp");
    bmp[14] = 0x99; // no known DIB header size
    assert_eq!(t(&bmp), "-");
    assert_eq!(t(b"BMW owners club news"), "text/plain");
    assert_eq!(t(b"II*\x00\x08\x00\x00\x00"), "image/tiff");
    assert_eq!(t(b"MM\x00*\x00\x00\x00\x08"), "image/tiff");
    assert_eq!(t(b"RIFF\x24\x00\x00\x00WEBPVP8 "), "image/webp");
    assert_eq!(t(b"\x00\x00\x01\x00\x02\x00\x10\x10"), "image/x-icon");
    assert_eq!(t(b"\x00\x00\x02\x00\x01\x00\x20\x20"), "image/x-cursor");
    // Uncompressed true-colour TGA without ID or colour map: the same four
    // bytes as a cursor directory.
    assert_eq!(
        t(b"\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x60\x00\x40\x00\x18\x00"),
        "image/x-cursor"
    );
    assert_eq!(
        t(b"\x00\x00\x00\x0cjP  \r\n\x87\n\x00\x00\x00\x14ftypjp2 "),
        "image/jp2"
    );
    assert_eq!(t(b"AT&TFORM\x00\x00\x01\xaaDJVUINFO"), "image/vnd.djvu");
    assert_eq!(t(b"AT&TFORM\x00\x00\x01\xaaDJVMDIRM"), "image/vnd.djvu");
    assert_eq!(t(b"AT&TFORM\x00\x00\x01\xaaXXXX"), "-");
    // Formats Zeek does not type.
    assert_eq!(t(b"\x0a\x05\x01\x08\x00\x00\x00\x00\x5f\x00\x3f\x00"), "-"); // PCX
    assert_eq!(t(b"P4\n96 64\n\x00\x00\x00\x00"), "-"); // PBM: 9 printable bytes
}

#[test]
fn xml_vocabularies() {
    let decl = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
    let x = |rest: &str| t(format!("{decl}{rest}").as_bytes());
    assert_eq!(x("<budget year=\"2026\">"), "application/xml");
    assert_eq!(
        x("<svg xmlns=\"http://www.w3.org/2000/svg\">"),
        "image/svg+xml"
    );
    assert_eq!(
        x("<!DOCTYPE svg PUBLIC \"-//W3C//DTD SVG 1.1//EN\">\n<svg>"),
        "image/svg+xml"
    );
    assert_eq!(
        x("<kml xmlns=\"http://www.opengis.net/kml/2.2\">"),
        "application/vnd.google-earth.kml+xml"
    );
    assert_eq!(
        x("<feed xmlns=\"http://www.w3.org/2005/Atom\">"),
        "text/atom"
    );
    assert_eq!(x("<rss version=\"2.0\">"), "text/rss");
    assert_eq!(x("<!-- c -->\n<html xmlns=\"x\">"), "text/html");
    assert_eq!(x("<svgfoo/>"), "application/xml");
    assert_eq!(t(b"<?xml version=\"1.0\"?>"), "application/xml");
    assert_eq!(t(b"<svg width=\"1\" height=\"1\"></svg>"), "image/svg+xml");
    // Without a declaration, <feed> is not enough.
    assert_eq!(t(b"<feed>some text</feed>"), "text/plain");
    assert_eq!(t(b"<!DOCTYPE html>\n<html>"), "text/html");
}

#[test]
fn archives_and_compressors() {
    let mut tar = padded(b"tree/", 257, 0);
    tar.extend_from_slice(b"ustar\x0000");
    assert_eq!(t(&tar), "application/x-tar");
    let mut gnutar = padded(b"Makefile", 257, 0);
    gnutar.extend_from_slice(b"ustar  \x00");
    assert_eq!(t(&gnutar), "application/x-tar");
    assert_eq!(t(b"BZh91AY&SY"), "application/x-bzip2");
    assert_eq!(t(b"BZh0"), "-");
    assert_eq!(t(b"\xfd7zXZ\x00\x00\x04"), "application/x-xz");
    assert_eq!(
        t(b"\x5d\x00\x00\x00\x04\xff\xff\xff\xff\xff\xff\xff\xff\x00"),
        "application/x-lzma"
    );
    assert_eq!(
        t(b"\x5d\x00\x00\x80\x00\x00\x30\x00\x00\x00\x00\x00\x00\x00"),
        "application/x-lzma"
    );
    assert_eq!(
        t(b"\x5d\x00\x00\x00\x04\x12\x34\x56\x78\x9a\xbc\xde\xf0"),
        "-"
    );
    assert_eq!(t(b"\x04\x22\x4d\x18\x64\x40\xa7"), "application/x-lz4");
    assert_eq!(t(b"LZIP\x01\xcf"), "application/x-lzip");
    assert_eq!(t(b"\x1f\x9d\x90\x74"), "application/x-compress");
    assert_eq!(t(b"LRZI\x00\x06\x00\x50"), "application/x-lrzip");
    assert_eq!(
        t(b"7z\xbc\xaf\x27\x1c\x00\x04"),
        "application/x-7z-compressed"
    );
    assert_eq!(t(b"\xc7\x71\x00\xfe\xe5\xe1"), "application/x-cpio");
    assert_eq!(t(b"\x71\xc7\xfe\x00\xe1\xe5"), "application/x-cpio");
    assert_eq!(t(b"070701000A1B2C"), "application/x-cpio");
    assert_eq!(t(b"070707000001"), "application/x-cpio");
    assert_eq!(t(b"\x60\xea\x29\x00\x22\x0b\x01\x02"), "application/x-arj");
    assert_eq!(t(b"\x60\xea\x00\x00"), "-");
    assert_eq!(t(b"\x2c\x00-lh5-\x07\x01\x00\x00"), "application/x-lzh");
    assert_eq!(t(b"\x2c\x00-lz4-\x07\x01\x00\x00"), "application/x-lzh");
    assert_eq!(
        t(b"MSCF\x00\x00\x00\x00\x9c\x01"),
        "application/vnd.ms-cab-compressed"
    );
    assert_eq!(t(b"Rar!\x1a\x07\x01\x00\xc5"), "application/x-rar");
    assert_eq!(t(b"Rar!\x1a\x07\x00\xcf"), "application/x-rar");
    assert_eq!(
        t(b"!<arch>\ndebian-binary   1767225600  0     0     100644  4         `\n"),
        "application/x-debian-package"
    );
    assert_eq!(t(b"!<arch>\nletter.txt/     0 "), "application/x-archive");
    assert_eq!(t(b"\xed\xab\xee\xdb\x03\x00\x00\x00"), "application/x-rpm");
    // Not typed by Zeek: zstd, lzop, ISO 9660 (CD001 is at 32769).
    assert_eq!(t(b"\x28\xb5\x2f\xfd\x64\x00\x4f\x8d"), "-");
    assert_eq!(t(b"\x89LZO\x00\r\n\x1a\n\x10\x40"), "-");
    assert_eq!(t(&[0u8; 4096]), "-");
}

#[test]
fn executables() {
    let elf = |class: u8, data: u8, etype: u16| {
        let mut v = b"\x7fELF".to_vec();
        v.extend_from_slice(&[class, data, 1, 0]);
        v.extend_from_slice(&[0; 8]);
        if data == 1 {
            v.extend_from_slice(&etype.to_le_bytes());
        } else {
            v.extend_from_slice(&etype.to_be_bytes());
        }
        v.extend_from_slice(&[0x3e, 0]);
        v
    };
    assert_eq!(t(&elf(2, 1, 1)), "application/x-object");
    assert_eq!(t(&elf(2, 1, 2)), "application/x-executable");
    assert_eq!(t(&elf(2, 1, 3)), "application/x-sharedlib");
    assert_eq!(t(&elf(1, 2, 2)), "application/x-executable");
    assert_eq!(t(&elf(2, 1, 4)), "application/x-coredump");
    assert_eq!(t(&elf(2, 1, 9)), "-");
    assert_eq!(t(b"MZ\x90\x00\x03\x00\x00\x00"), "application/x-dosexec");
    assert_eq!(
        t(b"\xcf\xfa\xed\xfe\x07\x00\x00\x01\x03\x00\x00\x00\x02\x00\x00\x00"),
        "application/x-mach-o-executable"
    );
    assert_eq!(
        t(b"\xfe\xed\xfa\xce\x00\x00\x00\x12"),
        "application/x-mach-o-executable"
    );
    assert_eq!(
        t(b"\xce\xfa\xed\xfe\x07\x00\x00\x00"),
        "application/x-mach-o-executable"
    );
    // 0xCAFEBABE: universal binary with 2 architectures, class files.
    assert_eq!(
        t(b"\xca\xfe\xba\xbe\x00\x00\x00\x02\x01\x00\x00\x07"),
        "application/x-mach-o-executable"
    );
    assert_eq!(
        t(b"\xca\xfe\xba\xbe\x00\x00\x00\x34\x00\x2b"),
        "application/x-java-applet"
    );
    assert_eq!(
        t(b"\xca\xfe\xba\xbe\x00\x03\x00\x2d\x00\x2b"),
        "application/x-java-applet"
    );
    // Java 17 (major 61): Zeek has no type for it.
    assert_eq!(t(b"\xca\xfe\xba\xbe\x00\x00\x00\x3d\x00\x31"), "-");
    assert_eq!(
        t(b"\xfe\xed\xfe\xed\x00\x00\x00\x02"),
        "application/x-java-keystore"
    );
    assert_eq!(
        t(b"\xce\xce\xce\xce\x00\x00\x00\x02"),
        "application/x-java-jce-keystore"
    );
    // CPython 3.11 (3495) and 2.7 (62211) bytecode.
    assert_eq!(
        t(b"\xa7\x0d\x0d\x0a\x01\x00\x00\x00"),
        "application/x-python-bytecode"
    );
    assert_eq!(
        t(b"\x03\xf3\x0d\x0a\x00\x00\x00\x00"),
        "application/x-python-bytecode"
    );
    assert_eq!(t(b"\x01\x00\x0d\x0a\x00\x00\x00\x00"), "-");
    assert_eq!(
        t(b"L\x00\x00\x00\x01\x14\x02\x00\x00\x00\x00\x00\xc0\x00\x00\x00\x00\x00\x00F\x9a\x00"),
        "application/x-ms-shortcut"
    );
    assert_eq!(
        t(b"FWS\x0a\x4a\x01\x00\x00"),
        "application/x-shockwave-flash"
    );
    assert_eq!(
        t(b"CWS\x0a\x4a\x01\x00\x00"),
        "application/x-shockwave-flash"
    );
    assert_eq!(
        t(b"ZWS\x0d\x4a\x01\x00\x00"),
        "application/x-shockwave-flash"
    );
}

#[test]
fn scripts_and_text() {
    assert_eq!(t(b"#!/bin/sh\necho hello\n"), "text/x-shellscript");
    assert_eq!(t(b"#!/usr/bin/env bash\nset -e\n"), "text/x-shellscript");
    assert_eq!(
        t(b"#!/bin/sh\n# This is a shell archive (produced by GNU sharutils).\n"),
        "application/x-shar"
    );
    assert_eq!(t(b"#!/usr/bin/env python3\nimport os\n"), "text/x-python");
    assert_eq!(t(b"#!/usr/bin/perl\nuse strict;\n"), "text/x-perl");
    assert_eq!(t(b"#!/usr/bin/ruby\nputs 1\n"), "text/x-ruby");
    assert_eq!(t(b"<?php\necho 'x';\n"), "text/x-php");
    assert_eq!(t(b"@echo off\r\nrem x\r\n"), "text/x-msdos-batch");
    assert_eq!(t(b"@ECHO OFF\r\nrem x\r\n"), "text/x-msdos-batch");
    assert_eq!(
        t(b"(function() {\n  'use strict';\n"),
        "application/javascript"
    );
    assert_eq!(t(b"'use strict';\nvar a = 1;\n"), "application/javascript");
    assert_eq!(t(b"{\n  \"report\": \"q\"\n}\n"), "text/json");
    assert_eq!(t(b"[general]\nname = corpus\n"), "text/ini");
    assert_eq!(t(b"[general]\r\nname = corpus\r\n"), "text/ini");
    assert_eq!(t(b"[1, 2, 3, 4, 5, 6]\n"), "text/plain");
    assert_eq!(t(b"[not a section] but text\n"), "text/plain");
    assert_eq!(t(b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\n"), "text/calendar");
    assert_eq!(t(b"begin:vcalendar\r\nversion:2.0\r\n"), "text/calendar");
    assert_eq!(t(b"BEGIN:VCARD\r\nVERSION:3.0\r\n"), "text/x-vcard");
    assert_eq!(
        t(b"WARC/1.0\r\nWARC-Type: warcinfo\r\n"),
        "application/warc"
    );
    assert_eq!(t(b"month,income,cost\n1,2,3\n"), "text/plain");
    assert_eq!(t(b"SQLite format 3\x00\x10\x00"), "text/plain");
    assert_eq!(t(b"MIME-Version: 1.0\nContent-Type: x\n"), "text/plain");
    assert_eq!(t(b"P6\n96 64\n255\n\xf0\xf0"), "text/plain");
    // UTF-16LE text is not typed; a registry export in UTF-16LE is.
    let utf16 = |s: &str| -> Vec<u8> {
        let mut v = b"\xff\xfe".to_vec();
        v.extend(s.encode_utf16().flat_map(u16::to_le_bytes));
        v
    };
    assert_eq!(t(&utf16("Quarterly status of the corpus")), "-");
    assert_eq!(
        t(&utf16("Windows Registry Editor Version 5.00\r\n\r\n[HKEY_")),
        "application/vnd.ms-reg"
    );
    assert_eq!(
        t(b"REGEDIT4\r\n\r\n[HKEY_LOCAL_MACHINE]"),
        "application/vnd.ms-reg"
    );
}

#[test]
fn keys_and_certificates() {
    assert_eq!(
        t(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQ"),
        "application/pgp-keys"
    );
    assert_eq!(t(b"-----BEGIN PGP MESSAGE-----\n\nhQ"), "application/pgp");
    assert_eq!(
        t(b"-----BEGIN PGP SIGNATURE-----\n\niQ"),
        "application/pgp-signature"
    );
    assert_eq!(t(b"-----BEGIN CERTIFICATE-----\nMIID"), "application/x-pem");
    assert_eq!(
        t(b"-----BEGIN CERTIFICATE REQUEST-----\nMIIC"),
        "text/plain"
    );
    // Binary OpenPGP: a public key packet is a keyring; an encrypted or
    // compressed message is not typed.
    assert_eq!(
        t(b"\x99\x01\x0d\x04\x6b\x13\x04\x07"),
        "application/x-gnupg-keyring"
    );
    assert_eq!(
        t(b"\x98\x8d\x04\x6b\x13\x04\x07"),
        "application/x-gnupg-keyring"
    );
    assert_eq!(t(b"\x85\x01\x0c\x03\xa3\x01\xc6\x33"), "-");
    assert_eq!(t(b"\xa3\x01\x9b\xc0\xcb\xcc\xc0\xc5"), "-");
    // DER (X.509, PKCS#12, PKCS#7) is not typed.
    assert_eq!(t(b"\x30\x82\x03\x50\x30\x82\x02\x38\xa0\x03\x02\x01"), "-");
    assert_eq!(t(b"\x30\x82\x0a\x1f\x02\x01\x03\x30\x82\x09\xd5\x06"), "-");
}

#[test]
fn audio() {
    assert_eq!(t(b"RIFF\xa4\x25\x00\x00WAVEfmt "), "audio/x-wav");
    assert_eq!(t(b"FORM\x00\x00\x1f\x90AIFFCOMM"), "audio/x-aiff");
    assert_eq!(t(b"FORM\x00\x00\x1f\x90AIFCFVER"), "audio/x-aiff");
    assert_eq!(t(b"FORM\x00\x00\x1f\x90ILBMBMHD"), "-");
    assert_eq!(t(b".snd\x00\x00\x00\x2c\x00\x00\x0f\xa0"), "audio/basic");
    assert_eq!(
        t(b"riff\x2e\x91\xcf\x11\xa5\xd6\x28\xdb\x04\xc1\x00\x00\x28\x13"),
        "audio/x-w64"
    );
    assert_eq!(t(b"\xff\xf3\x40\xc4\x00\x14"), "audio/mpeg");
    assert_eq!(t(b"\xff\xfb\x90\x64\x00\x00"), "audio/mpeg");
    assert_eq!(t(b"\xff\xfb\xf0\x64\x00\x00"), "-"); // bitrate index 15
    assert_eq!(t(b"ID3\x03\x00\x00\x00\x00\x1f\x76"), "audio/mpeg");
    assert_eq!(t(b"\xff\xf1\x50\x40\x10\x7f\xfc"), "audio/x-hx-aac-adts");
    assert_eq!(t(b"\xff\xf9\x50\x40\x10\x7f\xfc"), "audio/x-hx-aac-adts");
    assert_eq!(t(b"OggS\x00\x02\x00\x00\x00\x00"), "application/ogg");
    assert_eq!(t(b"fLaC\x00\x00\x00\x22"), "audio/x-flac");
    assert_eq!(t(b"MThd\x00\x00\x00\x06\x00\x00\x00\x01"), "audio/midi");
    assert_eq!(t(b"\x00\x00\x00\x1cftypM4A \x00\x00\x02\x00"), "audio/mp4");
}

#[test]
fn video() {
    let ftyp = |brand: &[u8]| {
        let mut v = b"\x00\x00\x00\x1cftyp".to_vec();
        v.extend_from_slice(brand);
        v.extend_from_slice(b"\x00\x00\x02\x00");
        v
    };
    assert_eq!(t(&ftyp(b"isom")), "video/mp4");
    assert_eq!(t(&ftyp(b"mp42")), "video/mp4");
    assert_eq!(t(&ftyp(b"qt  ")), "video/quicktime");
    assert_eq!(t(&ftyp(b"3gp4")), "video/3gpp");
    assert_eq!(t(&ftyp(b"3g2a")), "video/3gpp2");
    assert_eq!(t(&ftyp(b"zzzz")), "-");
    let ebml = |doctype: &[u8]| {
        let mut v = b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\xf7\x81\x01\x42\x82".to_vec();
        v.push(0x80 | doctype.len() as u8);
        v.extend_from_slice(doctype);
        v
    };
    assert_eq!(t(&ebml(b"webm")), "video/webm");
    assert_eq!(t(&ebml(b"matroska")), "video/x-matroska");
    assert_eq!(t(&ebml(b"other")), "-");
    assert_eq!(t(b"RIFF\xba\x4d\x00\x00AVI LIST"), "video/x-msvideo");
    assert_eq!(t(b"FLV\x01\x01\x00\x00\x00\x09"), "video/x-flv");
    assert_eq!(t(b"\x00\x00\x01\xba\x21\x00\x01\x00"), "video/mpeg");
    assert_eq!(t(b"\x00\x00\x01\xb3\x04\x00\x30\x13"), "video/mpeg");
    let mut ts = vec![0xffu8; 188 * 3];
    for p in 0..3 {
        ts[p * 188] = 0x47;
    }
    assert_eq!(t(&ts), "video/mp2t");
    assert_eq!(t(&ts[..377]), "video/mp2t");
    // Fewer than three packets, or one sync byte missing.
    assert_eq!(t(&ts[..376]), "-");
    ts[376] = 0;
    assert_eq!(t(&ts), "-");
    let mut text = padded(b"Good morning", 400, b'x');
    text[188] = b'G';
    assert_eq!(t(&text), "text/plain");
    assert_eq!(
        t(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11\xa6\xd9\x00\xaa\x00\x62\xce\x6c\x4d\x02"),
        "video/x-ms-asf"
    );
    assert_eq!(t(b"\x00\x00\x00\x01\x67\x64\x00\x0a"), "video/h264");
    assert_eq!(t(b"\x00\x00\x00\x01\x09\x10\x00\x00"), "video/h264");
    assert_eq!(t(b"\x00\x00\x00\x01\x41\x9a\x00\x00"), "-");
}

#[test]
fn misc_binary() {
    assert_eq!(t(b"bplist00\xd4\x01\x02"), "application/bplist");
    assert_eq!(
        t(b"\x00\x01\x00\x00\x00\x12\x01\x00\x00\x04\x00\x20GDEF"),
        "application/x-font-ttf"
    );
    assert_eq!(t(b"true\x00\x0b\x00\x80\x00\x03"), "application/x-font-ttf");
    assert_eq!(t(b"\x00\x01\x00\x00\x00\x00"), "-"); // no tables
    assert_eq!(t(b"wOFF\x00\x01\x00\x00"), "application/font-woff");
    assert_eq!(t(b"wOF2\x00\x01\x00\x00"), "application/font-woff2");
    assert_eq!(
        t(b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00"),
        "application/vnd.tcpdump.pcap"
    );
    assert_eq!(
        t(b"\xa1\xb2\xc3\xd4\x00\x02\x00\x04"),
        "application/vnd.tcpdump.pcap"
    );
    assert_eq!(
        t(b"\x4d\x3c\xb2\xa1\x02\x00\x04\x00"),
        "application/vnd.tcpdump.pcap"
    );
}

/// Truncated prefixes of every rule's input never panic and stay bounded.
#[test]
fn prefixes_never_panic() {
    let samples: &[&[u8]] = &[
        b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00",
        b"\x00\x00\x00\x1cftypM4A \x00\x00",
        b"\x1a\x45\xdf\xa3\xa3\x42\x82\x88matroska",
        b"PK\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x14\x00\x00\x00\x14\x00\x00\x00\x08\x00\x00\x00mimetypeapplication/epub+zip",
        b"\xca\xfe\xba\xbe\x00\x00\x00\x34",
        b"\x5d\x00\x00\x00\x04\xff\xff\xff\xff\xff\xff\xff\xff",
        b"<?xml version=\"1.0\"?><!-- x --><svg ",
        b"#!/bin/sh\n# This is a shell archive",
        b"\xff\xfeW\x00i\x00n\x00",
    ];
    for s in samples {
        for n in 0..=s.len() {
            let _ = sniff(&s[..n]);
        }
    }
}
