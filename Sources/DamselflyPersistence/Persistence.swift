/// RDB and journal persistence (being built).
public enum Persistence {}
