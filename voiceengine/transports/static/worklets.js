registerProcessor("x", class {});
