// pinproxy pin set "app-4" (the set expires 2027-06-30, OkHttp pins do not)
// Kotlin as is; in Java write `new CertificatePinner.Builder()`
CertificatePinner.Builder()
    .add("api.example.com", "sha256/tM/u/k5HeJDvkIGDie9SHfQDQ7YyORlmFwn21Gyen0g=") // current key, certs/api.key (key)
    .add("api.example.com", "sha256/ZHWbyPsLHYRcwbW4Jmib8fxi16zaENPKDS1DCV4tSqM=") // backup key #1 - - offline (key)
    .add("api.example.com", "sha256/v6B3z7cacGR17Mj91GkcActHOe35KSbeP/UZaZCxg/4=") // issuing CA (ca)
    .build()
