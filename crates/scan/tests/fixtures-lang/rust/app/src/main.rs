fn main() {
    let mut buf = itoa::Buffer::new();
    let n = buf.format(42u32);
    println!("{n} {:?}", memchr::memchr(b'2', n.as_bytes()));
}
